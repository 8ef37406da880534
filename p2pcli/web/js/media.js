// Just enough of the MP4 and WebM containers to feed Media Source Extensions (sans-IO).
//
// MSE takes fragmented MP4 (moov with mvex, then moof+mdat fragments) and WebM (EBML
// header, Segment, Info, Tracks, then Clusters). From the first bytes of a file this finds
// the container, the codecs string `MediaSource.isTypeSupported` wants and where the
// initialization segment ends; from the index (MP4 `mfra` at the end of the file, WebM
// `Cues`) it maps a time to the byte offset of the fragment or cluster holding it. Without
// an index, `findFragment` scans bytes for the next fragment/cluster start, for seeking by
// bitrate. Functions take a Uint8Array and return plain objects: `{need: n}` means "give
// me the first n bytes of the file and ask again".

const ascii = (u, off, n) => String.fromCharCode(...u.subarray(off, off + n));
const hex2 = (n) => n.toString(16).padStart(2, '0');

function u32(u, off) {
  return ((u[off] << 24) | (u[off + 1] << 16) | (u[off + 2] << 8) | u[off + 3]) >>> 0;
}

function u64(u, off) {
  return u32(u, off) * 2 ** 32 + u32(u, off + 4);
}

// -- MP4 ------------------------------------------------------------------------------------

/** The box at `off`: {type, start, body, end}, or null when its header is not in `u`. */
function box(u, off, limit = u.length) {
  if (off + 8 > limit) return null;
  let size = u32(u, off);
  const type = ascii(u, off + 4, 4);
  let body = off + 8;
  if (size === 1) {
    if (off + 16 > limit) return null;
    size = u64(u, off + 8);
    body = off + 16;
  } else if (size === 0) {
    size = Infinity; // to the end of the file
  }
  if (size < body - off) throw new Error(`MP4 box "${type}" has an impossible size`);
  return { type, start: off, body, end: off + size };
}

function children(u, start, end) {
  const out = [];
  let off = start;
  while (off + 8 <= end) {
    const b = box(u, off, end);
    if (!b || b.end > end) break;
    out.push(b);
    off = b.end;
  }
  return out;
}

const child = (u, parent, type) => children(u, parent.body, parent.end).find((b) => b.type === type);

function path(u, parent, ...types) {
  let b = parent;
  for (const t of types) {
    b = b && child(u, b, t);
  }
  return b || null;
}

// ES descriptors (ISO 14496-1): tag, a length of 1-4 bytes of 7 bits each, body.
function descriptor(u, off, end) {
  if (off + 2 > end) return null;
  const tag = u[off];
  let len = 0;
  let i = off + 1;
  for (let n = 0; n < 4 && i < end; n++) {
    const b = u[i++];
    len = (len << 7) | (b & 0x7f);
    if (!(b & 0x80)) break;
  }
  return { tag, body: i, end: Math.min(i + len, end) };
}

function mp4aCodec(u, entry) {
  // AudioSampleEntry: 8 header + 28 fields, then boxes.
  const esds = children(u, entry.body + 28, entry.end).find((b) => b.type === 'esds');
  if (!esds) return 'mp4a.40.2';
  let d = descriptor(u, esds.body + 4, esds.end); // ES_Descriptor
  if (!d || d.tag !== 3) return 'mp4a.40.2';
  const flags = u[d.body + 2];
  let off = d.body + 3;
  if (flags & 0x80) off += 2;
  if (flags & 0x40) off += 1 + u[off];
  if (flags & 0x20) off += 2;
  d = descriptor(u, off, d.end); // DecoderConfigDescriptor
  if (!d || d.tag !== 4) return 'mp4a.40.2';
  const oti = u[d.body];
  if (oti !== 0x40) return `mp4a.${hex2(oti)}`;
  const dsi = descriptor(u, d.body + 13, d.end);
  if (!dsi || dsi.tag !== 5) return 'mp4a.40.2';
  let aot = u[dsi.body] >> 3;
  if (aot === 31) aot = 32 + (((u[dsi.body] & 7) << 3) | (u[dsi.body + 1] >> 5));
  return `mp4a.40.${aot}`;
}

function sampleEntryCodec(u, entry) {
  const t = entry.type;
  const visual = entry.body + 78; // VisualSampleEntry fields, then boxes
  if (t === 'avc1' || t === 'avc3') {
    const c = children(u, visual, entry.end).find((b) => b.type === 'avcC');
    if (!c) return t;
    return `${t}.${hex2(u[c.body + 1])}${hex2(u[c.body + 2])}${hex2(u[c.body + 3])}`;
  }
  if (t === 'av01') {
    const c = children(u, visual, entry.end).find((b) => b.type === 'av1C');
    if (!c) return 'av01.0.08M.08';
    const profile = u[c.body + 1] >> 5;
    const level = u[c.body + 1] & 0x1f;
    const tier = u[c.body + 2] & 0x80 ? 'H' : 'M';
    const high = u[c.body + 2] & 0x40;
    const twelve = u[c.body + 2] & 0x20;
    const depth = high ? (twelve ? 12 : 10) : 8;
    return `av01.${profile}.${String(level).padStart(2, '0')}${tier}.${String(depth).padStart(2, '0')}`;
  }
  if (t === 'vp09') {
    const c = children(u, visual, entry.end).find((b) => b.type === 'vpcC');
    if (!c) return 'vp09.00.10.08';
    const b = c.body + 4;
    const two = (n) => String(n).padStart(2, '0');
    return `vp09.${two(u[b])}.${two(u[b + 1])}.${two(u[b + 2] >> 4)}`;
  }
  if (t === 'mp4a') return mp4aCodec(u, entry);
  if (t === 'Opus') return 'opus';
  if (t === 'fLaC') return 'flac';
  return t; // hvc1, hev1, ac-3, ...: isTypeSupported will decide
}

/**
 * An MP4 from its first bytes: {kind: 'mp4', fragmented, mime, codecs, initEnd, timescale,
 * duration, tracks} or {need: n}. Throws on something that is not MP4 at all.
 */
export function probeMp4(u, fileSize) {
  let off = 0;
  let moov = null;
  for (;;) {
    if (off >= fileSize) break;
    const b = box(u, off);
    if (!b) return { need: Math.min(fileSize, off + 16) };
    if (b.type === 'moov') {
      if (b.end > u.length) return { need: Math.min(fileSize, b.end) };
      moov = b;
      break;
    }
    if (b.type === 'moof' || b.type === 'mdat') break; // media before the movie box
    off = b.end;
  }
  if (!moov) return { kind: 'mp4', fragmented: false, reason: 'its index (moov) is after the media data' };
  const tracks = [];
  for (const trak of children(u, moov.body, moov.end).filter((b) => b.type === 'trak')) {
    const tkhd = child(u, trak, 'tkhd');
    const mdhd = path(u, trak, 'mdia', 'mdhd');
    const hdlr = path(u, trak, 'mdia', 'hdlr');
    const stsd = path(u, trak, 'mdia', 'minf', 'stbl', 'stsd');
    if (!tkhd || !mdhd || !hdlr || !stsd) continue;
    const id = u32(u, tkhd.body + (u[tkhd.body] === 1 ? 20 : 12));
    const timescale = u32(u, mdhd.body + (u[mdhd.body] === 1 ? 20 : 12));
    const handler = ascii(u, hdlr.body + 8, 4);
    const entry = box(u, stsd.body + 8, stsd.end);
    if (!entry) continue;
    tracks.push({ id, timescale, handler, codec: sampleEntryCodec(u, entry), defaultDuration: 0 });
  }
  const mvhd = child(u, moov, 'mvhd');
  let timescale = 1000;
  let duration = 0;
  if (mvhd) {
    const v1 = u[mvhd.body] === 1;
    timescale = u32(u, mvhd.body + (v1 ? 20 : 12));
    duration = v1 ? u64(u, mvhd.body + 24) : u32(u, mvhd.body + 16);
  }
  const mvex = child(u, moov, 'mvex');
  const mehd = mvex && child(u, mvex, 'mehd');
  for (const trex of mvex ? children(u, mvex.body, mvex.end).filter((b) => b.type === 'trex') : []) {
    const track = tracks.find((t) => t.id === u32(u, trex.body + 4));
    if (track) track.defaultDuration = u32(u, trex.body + 12);
  }
  if (!duration && mehd) duration = u[mehd.body] === 1 ? u64(u, mehd.body + 4) : u32(u, mehd.body + 4);
  const av = tracks.filter((t) => t.handler === 'vide' || t.handler === 'soun');
  const video = av.some((t) => t.handler === 'vide');
  const codecs = av.map((t) => t.codec);
  return {
    kind: 'mp4',
    fragmented: Boolean(mvex),
    reason: mvex ? null : 'it is not a fragmented MP4',
    mime: `${video ? 'video' : 'audio'}/mp4; codecs="${codecs.join(',')}"`,
    codecs,
    initEnd: moov.end,
    duration: duration && timescale ? duration / timescale : null,
    tracks: av,
  };
}

/** Where the mfra box starts, from the file's last 16 bytes (its mfro), or null. */
export function mfraStart(tail16, fileSize) {
  if (tail16.length < 16 || ascii(tail16, 4, 4) !== 'mfro') return null;
  const size = u32(tail16, 12);
  return size >= 16 && size <= fileSize ? fileSize - size : null;
}

/**
 * The random-access index in an mfra box: [{time (s), offset}] of the track chosen by
 * `pick` (the video track when there is one), sorted by time.
 */
export function parseMfra(u, tracks) {
  const mfra = box(u, 0);
  if (!mfra || mfra.type !== 'mfra') return null;
  const tables = new Map();
  for (const tfra of children(u, mfra.body, Math.min(mfra.end, u.length)).filter((b) => b.type === 'tfra')) {
    const v1 = u[tfra.body] === 1;
    const track = u32(u, tfra.body + 4);
    const sizes = u32(u, tfra.body + 8);
    const skip = ((sizes >> 4) & 3) + ((sizes >> 2) & 3) + (sizes & 3) + 3;
    const n = u32(u, tfra.body + 12);
    const entries = [];
    let off = tfra.body + 16;
    for (let i = 0; i < n && off + (v1 ? 16 : 8) + skip <= tfra.end; i++) {
      const time = v1 ? u64(u, off) : u32(u, off);
      const offset = v1 ? u64(u, off + 8) : u32(u, off + 4);
      off += (v1 ? 16 : 8) + skip;
      entries.push({ time, offset });
    }
    tables.set(track, entries);
  }
  const chosen = tracks.find((t) => t.handler === 'vide' && tables.has(t.id))
    || tracks.find((t) => tables.has(t.id));
  if (!chosen) return null;
  return tables.get(chosen.id)
    .map((e) => ({ time: e.time / chosen.timescale, offset: e.offset }))
    .sort((a, b) => a.time - b.time);
}

/**
 * When the last fragment in `u` (the file's tail) ends, in seconds: its tfdt plus its
 * samples' durations, for the longest track. For files whose header and index give no
 * duration. Null when `u` holds no whole moof.
 */
export function lastFragmentEnd(u, tracks) {
  for (let at = u.length - 16; at >= 0; at--) {
    if (u[at + 4] !== 0x6d || findMoof(u.subarray(at, at + 16), 0) !== 0) continue;
    const moof = box(u, at);
    if (moof.end > u.length) continue;
    let end = null;
    for (const traf of children(u, moof.body, moof.end).filter((b) => b.type === 'traf')) {
      const tfhd = child(u, traf, 'tfhd');
      const tfdt = child(u, traf, 'tfdt');
      if (!tfhd || !tfdt) continue;
      const track = tracks.find((t) => t.id === u32(u, tfhd.body + 4));
      if (!track) continue;
      const hf = u32(u, tfhd.body) & 0xffffff;
      let off = tfhd.body + 8 + (hf & 0x01 ? 8 : 0) + (hf & 0x02 ? 4 : 0);
      const fallback = hf & 0x08 ? u32(u, off) : track.defaultDuration;
      let t = u[tfdt.body] === 1 ? u64(u, tfdt.body + 4) : u32(u, tfdt.body + 4);
      for (const trun of children(u, traf.body, traf.end).filter((b) => b.type === 'trun')) {
        const rf = u32(u, trun.body) & 0xffffff;
        const count = u32(u, trun.body + 4);
        off = trun.body + 8 + (rf & 0x01 ? 4 : 0) + (rf & 0x04 ? 4 : 0);
        const per = 4 * [0x100, 0x200, 0x400, 0x800].filter((f) => rf & f).length;
        for (let i = 0; i < count; i++, off += per) t += rf & 0x100 ? u32(u, off) : fallback;
      }
      const seconds = t / track.timescale;
      if (end === null || seconds > end) end = seconds;
    }
    if (end !== null) return end;
  }
  return null;
}

/** The start of the first moof box at or after `from` in `u`, or -1. */
function findMoof(u, from) {
  for (let i = Math.max(from, 0); i + 16 <= u.length; i++) {
    if (u[i + 4] === 0x6d && u[i + 5] === 0x6f && u[i + 6] === 0x6f && u[i + 7] === 0x66 // moof
      && u[i + 12] === 0x6d && u[i + 13] === 0x66 && u[i + 14] === 0x68 && u[i + 15] === 0x64 // mfhd
      && u32(u, i) >= 24) {
      return i;
    }
  }
  return -1;
}

// -- WebM (EBML) ----------------------------------------------------------------------------

const ID = {
  EBML: 0x1a45dfa3,
  Segment: 0x18538067,
  SeekHead: 0x114d9b74,
  Seek: 0x4dbb,
  SeekID: 0x53ab,
  SeekPosition: 0x53ac,
  Info: 0x1549a966,
  TimecodeScale: 0x2ad7b1,
  Duration: 0x4489,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackType: 0x83,
  CodecID: 0x86,
  Cluster: 0x1f43b675,
  Timecode: 0xe7,
  Cues: 0x1c53bb6b,
  CuePoint: 0xbb,
  CueTime: 0xb3,
  CueTrackPositions: 0xb7,
  CueClusterPosition: 0xf1,
};

/** An EBML variable-length integer: {len, value}; `keepMarker` for element IDs. */
function vint(u, off, keepMarker) {
  if (off >= u.length) return null;
  const first = u[off];
  let len = 1;
  while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
  if (len > 8 || off + len > u.length) return null;
  let value = keepMarker ? first : first & (0xff >> len);
  let allOnes = value === (0xff >> len);
  for (let i = 1; i < len; i++) {
    value = value * 256 + u[off + i];
    if (u[off + i] !== 0xff) allOnes = false;
  }
  return { len, value, unknown: !keepMarker && allOnes };
}

/** The element at `off`: {id, start, body, end} (end Infinity: unknown size), or null. */
function element(u, off) {
  const id = vint(u, off, true);
  if (!id) return null;
  const size = vint(u, off + id.len, false);
  if (!size) return null;
  const body = off + id.len + size.len;
  return { id: id.value, start: off, body, end: size.unknown ? Infinity : body + size.value };
}

function elements(u, start, end) {
  const out = [];
  let off = start;
  while (off < Math.min(end, u.length)) {
    const e = element(u, off);
    if (!e || e.end > end) break;
    out.push(e);
    off = e.end;
  }
  return out;
}

const uint = (u, e) => {
  let v = 0;
  for (let i = e.body; i < e.end; i++) v = v * 256 + u[i];
  return v;
};

function float(u, e) {
  const view = new DataView(u.buffer, u.byteOffset + e.body, e.end - e.body);
  return e.end - e.body === 4 ? view.getFloat32(0) : view.getFloat64(0);
}

const WEBM_CODECS = {
  V_VP8: 'vp8',
  V_VP9: 'vp9',
  V_AV1: 'av01.0.08M.08',
  A_VORBIS: 'vorbis',
  A_OPUS: 'opus',
  'V_MPEG4/ISO/AVC': 'avc1.42E01E',
  A_AAC: 'mp4a.40.2',
};

/**
 * A WebM from its first bytes: {kind: 'webm', mime, codecs, initEnd, duration,
 * segmentStart, cuesOffset} or {need: n}.
 */
export function probeWebm(u, fileSize) {
  const ebml = element(u, 0);
  if (!ebml) return { need: Math.min(fileSize, 64) };
  const seg = element(u, ebml.end);
  if (!seg) return { need: Math.min(fileSize, ebml.end + 16) };
  if (seg.id !== ID.Segment) throw new Error('WebM without a Segment');
  let off = seg.body;
  let timecodeScale = 1e6;
  let duration = null;
  let cuesOffset = null;
  const codecs = [];
  let video = false;
  let haveTracks = false;
  for (;;) {
    if (off >= fileSize) return { need: fileSize };
    const e = element(u, off);
    if (!e) return { need: Math.min(fileSize, off + 16) };
    if (e.id === ID.Cluster) break;
    if (e.end === Infinity) throw new Error('WebM header element of unknown size');
    if (e.end > u.length && (e.id === ID.Info || e.id === ID.Tracks || e.id === ID.SeekHead)) {
      return { need: Math.min(fileSize, e.end + 16) };
    }
    if (e.id === ID.SeekHead) {
      for (const seek of elements(u, e.body, e.end).filter((s) => s.id === ID.Seek)) {
        const parts = elements(u, seek.body, seek.end);
        const sid = parts.find((p) => p.id === ID.SeekID);
        const pos = parts.find((p) => p.id === ID.SeekPosition);
        if (sid && pos && uint(u, sid) === ID.Cues) cuesOffset = seg.body + uint(u, pos);
      }
    } else if (e.id === ID.Info) {
      for (const f of elements(u, e.body, e.end)) {
        if (f.id === ID.TimecodeScale) timecodeScale = uint(u, f);
        if (f.id === ID.Duration) duration = float(u, f);
      }
    } else if (e.id === ID.Tracks) {
      haveTracks = true;
      for (const t of elements(u, e.body, e.end).filter((x) => x.id === ID.TrackEntry)) {
        const fields = elements(u, t.body, t.end);
        const type = fields.find((f) => f.id === ID.TrackType);
        const codec = fields.find((f) => f.id === ID.CodecID);
        if (!codec) continue;
        const name = ascii(u, codec.body, codec.end - codec.body).replace(/\0+$/, '');
        if (type && uint(u, type) === 1) video = true;
        codecs.push(WEBM_CODECS[name] || name);
      }
    }
    off = e.end;
  }
  if (!haveTracks) throw new Error('WebM without Tracks before its first Cluster');
  return {
    kind: 'webm',
    fragmented: true,
    mime: `${video ? 'video' : 'audio'}/webm; codecs="${codecs.join(',')}"`,
    codecs,
    initEnd: off,
    duration: duration !== null ? (duration * timecodeScale) / 1e9 : null,
    timecodeScale,
    segmentStart: seg.body,
    cuesOffset,
  };
}

/** The Cues element at the start of `u`: [{time (s), offset}] sorted by time, or null. */
export function parseCues(u, info) {
  const cues = element(u, 0);
  if (!cues || cues.id !== ID.Cues || cues.end > u.length) return null;
  const out = [];
  for (const point of elements(u, cues.body, cues.end).filter((e) => e.id === ID.CuePoint)) {
    const fields = elements(u, point.body, point.end);
    const time = fields.find((f) => f.id === ID.CueTime);
    const pos = fields.find((f) => f.id === ID.CueTrackPositions);
    const cluster = pos && elements(u, pos.body, pos.end).find((f) => f.id === ID.CueClusterPosition);
    if (time && cluster) {
      out.push({
        time: (uint(u, time) * info.timecodeScale) / 1e9,
        offset: info.segmentStart + uint(u, cluster),
      });
    }
  }
  return out.sort((a, b) => a.time - b.time);
}

/** The size of the Cues element at the start of `u` (header needed), or null. */
export function elementEnd(u) {
  const e = element(u, 0);
  return e && e.end !== Infinity ? e.end : null;
}

function findCluster(u, from) {
  for (let i = Math.max(from, 0); i + 8 <= u.length; i++) {
    if (u[i] === 0x1f && u[i + 1] === 0x43 && u[i + 2] === 0xb6 && u[i + 3] === 0x75) {
      const e = element(u, i);
      if (e && e.body < u.length && u[e.body] === ID.Timecode) return i;
    }
  }
  return -1;
}

// -- either ---------------------------------------------------------------------------------

/** Which container the first bytes are: 'mp4', 'webm' or null. */
export function sniff(u) {
  if (u.length >= 8 && ['ftyp', 'styp', 'moov', 'free', 'skip'].includes(ascii(u, 4, 4))) return 'mp4';
  if (u.length >= 4 && u32(u, 0) === ID.EBML) return 'webm';
  return null;
}

/** Where the next fragment (MP4 moof) or cluster (WebM) starts in `u` at or after `from`. */
export function findFragment(kind, u, from = 0) {
  return kind === 'mp4' ? findMoof(u, from) : findCluster(u, from);
}

/** The byte offset of the last index entry at or before `time`, or null. */
export function offsetForTime(index, time) {
  if (!index || !index.length) return null;
  let lo = 0;
  let hi = index.length - 1;
  if (index[0].time > time) return index[0].offset;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (index[mid].time <= time + 1e-3) lo = mid;
    else hi = mid - 1;
  }
  return index[lo].offset;
}
