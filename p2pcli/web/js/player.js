// Plays verified pieces through Media Source Extensions, and tells the swarm what to fetch.
//
// The player appends the file's bytes in order from an *append cursor*: first the
// container's initialization segment, then fragments (MP4) or clusters (WebM) as their
// pieces are verified, staying at most MAX_AHEAD seconds ahead of the playhead. The swarm
// is asked for the pieces right at the cursor first, then the file's index (the MP4 mfra
// box at the end, or the WebM Cues) so seeking is exact, then a read-ahead window sized
// from the bitrate. A seek outside what is buffered moves the cursor to the fragment
// holding the new time (from the index, else estimated from the bitrate and found by
// scanning) and cancels requests nobody needs any more. Files MSE cannot take (a plain,
// non-fragmented MP4, an unknown container, a codec the browser lacks) are reported to
// the page, which downloads and verifies them whole instead.
//
// The swarm's pieces live on disk (store.js), so reading them is async. The state machine
// stays synchronous: `bytes(start, end)` returns what an earlier call started reading, or
// starts the read and returns null, and the read's arrival runs update() again.

import * as media from './media.js';

const URGENT_SECONDS = 4; // right at the cursor: needed now
const WINDOW_SECONDS = 30; // read-ahead, as playing time
const MIN_WINDOW = 2 * 1024 * 1024;
const MAX_WINDOW = 64 * 1024 * 1024;
const DEFAULT_BITRATE = 128 * 1024; // bytes/s until the duration is known
const MAX_AHEAD = 90; // seconds appended ahead of the playhead (SourceBuffer memory)
const APPEND_CHUNK = 1024 * 1024;
const SCAN_LIMIT = 8 * 1024 * 1024; // give up looking for a fragment start after this
const TAIL_SCAN = 256 * 1024; // MP4 without index or duration: the last fragment is in here
const GAP_JUMP = 10; // seconds: a seek landing before the first buffered fragment jumps ahead
const MAX_READS = 8; // byte ranges read ahead or in flight (bounds what a seek leaves behind)

export class Player {
  /**
   * `swarm`: has manifest, read(start, end) (a promise), contiguousFrom(start), has(piece),
   * setPriority(pieces, strict), setCursor(piece).
   * `events`: {status(text), unsupported(reason), error(text), info(info)}
   */
  constructor(video, swarm, events) {
    this.video = video;
    this.swarm = swarm;
    this.events = events;
    this.m = swarm.manifest;
    this.state = 'probe'; // probe -> attaching -> playing; or unsupported
    this.info = null;
    this.need = Math.min(this.m.size, 64 * 1024);
    this.index = null;
    this.indexState = 'unknown'; // unknown -> tail -> ready | none
    this.indexRange = null; // [start, end) of the index bytes once located
    this.mediaEnd = this.m.size;
    this.duration = null;
    this.ms = null;
    this.sb = null;
    this.appendCursor = 0;
    this.needReset = false;
    this.ended = false;
    this.scan = null; // {from}: looking for the next fragment start at or after `from`
    this.lastPriority = '';
    this.error = null;
    this.seekTarget = null;
    this.head = null; // the file's first bytes, from the probe: the init segment is in them
    this.reads = new Map(); // "start:end" -> {bytes}: reads from the store, oldest first
    video.addEventListener('seeking', () => this.onSeeking());
    for (const ev of ['timeupdate', 'waiting', 'playing', 'progress']) {
      video.addEventListener(ev, () => this.update());
    }
    video.addEventListener('error', () => this.onVideoError());
    this.timer = setInterval(() => this.update(), 250);
  }

  close() {
    clearInterval(this.timer);
  }

  /**
   * The verified bytes [start, end) if an earlier call read them (each read is handed out
   * once), else null: a read starts if they are all verified, and update() runs when it
   * ends. `prefix`: any read from `start` will do, however long (appends take what there
   * is, and the verified run from the cursor grows while a read is in flight).
   */
  bytes(start, end, prefix = false) {
    end = Math.min(end, this.m.size);
    const key = `${start}:${end}`;
    const found = prefix ? [...this.reads.keys()].find((k) => k.startsWith(`${start}:`)) : key;
    const entry = found && this.reads.get(found);
    if (entry) {
      if (!entry.bytes) return null;
      this.reads.delete(found);
      return entry.bytes;
    }
    if (this.swarm.contiguousFrom(start) < end - start) return null;
    const fresh = { bytes: null };
    this.reads.set(key, fresh);
    while (this.reads.size > MAX_READS) this.reads.delete(this.reads.keys().next().value);
    this.swarm.read(start, end).then(
      (bytes) => {
        if (this.reads.get(key) !== fresh) return; // dropped meanwhile
        if (!bytes) {
          this.reads.delete(key);
          return;
        }
        fresh.bytes = bytes;
        this.update();
      },
      (e) => {
        this.reads.delete(key);
        this.fail(new Error(`could not read the file from storage: ${e.message}`));
      },
    );
    return null;
  }

  // -- what to fetch --------------------------------------------------------------------------

  get bitrate() {
    const d = this.duration;
    return d ? (this.mediaEnd - (this.info ? this.info.initEnd : 0)) / d : DEFAULT_BITRATE;
  }

  pieceRange(start, end, out) {
    const r = this.m.piecesFor(Math.max(0, start), Math.min(end, this.m.size));
    if (r) for (let i = r[0]; i <= r[1]; i++) if (!out.includes(i)) out.push(i);
  }

  priority() {
    const out = [];
    if (this.state === 'probe') {
      this.pieceRange(0, this.need, out);
      return out;
    }
    if (this.state === 'unsupported') return out;
    const from = this.scan ? this.scan.from : this.appendCursor;
    const rate = this.bitrate;
    // The piece under the cursor, then the index (a piece or two, and what makes seeking
    // exact and, for ffmpeg's fragmented MP4, tells the duration), then the rest.
    this.pieceRange(from, from + 1, out);
    if (this.indexState === 'tail') this.pieceRange(this.m.size - 16, this.m.size, out);
    if (this.indexState === 'last-fragment') this.pieceRange(this.m.size - TAIL_SCAN, this.m.size, out);
    if (this.indexRange && this.indexState !== 'ready') this.pieceRange(...this.indexRange, out);
    this.pieceRange(from, from + rate * URGENT_SECONDS, out);
    const window = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, rate * WINDOW_SECONDS));
    this.pieceRange(from, Math.min(from + window, this.mediaEnd), out);
    return out;
  }

  updatePriority() {
    const list = this.priority();
    // After a seek, or while playback waits for data: fetch nothing else until it is in.
    const v = this.video;
    const strict = Boolean(this.scan) || (this.state === 'playing' && (v.seeking || (!v.paused && v.readyState < 3)));
    const key = `${strict}:${list.join(',')}`;
    if (key !== this.lastPriority) {
      this.lastPriority = key;
      this.swarm.setPriority(list, strict);
    }
    const cursor = this.scan ? this.scan.from : this.appendCursor;
    this.swarm.setCursor(Math.min(this.m.pieceCount - 1, this.m.pieceAt(cursor)));
  }

  // -- the state machine ----------------------------------------------------------------------

  /** Call whenever something changed: a piece arrived, an append ended, the video moved. */
  update() {
    if (this.error) return;
    try {
      if (this.state === 'probe') this.probe();
      if (this.state === 'attaching' || this.state === 'playing') {
        this.loadIndex();
        if (this.state === 'playing') {
          this.findScanTarget();
          this.pump();
          this.jumpGap();
        }
      }
      this.updatePriority();
    } catch (e) {
      this.fail(e);
    }
  }

  probe() {
    if (this.m.size === 0) {
      this.unsupported('the file is empty');
      return;
    }
    const head = this.bytes(0, this.need);
    if (!head) return;
    const kind = media.sniff(head);
    if (!kind) {
      this.unsupported('it is neither MP4 nor WebM');
      return;
    }
    let info;
    try {
      info = kind === 'mp4' ? media.probeMp4(head, this.m.size) : media.probeWebm(head, this.m.size);
    } catch (e) {
      this.unsupported(`its ${kind === 'mp4' ? 'MP4' : 'WebM'} header could not be read (${e.message})`);
      return;
    }
    if (info.need) {
      if (info.need > 32 * 1024 * 1024) {
        this.unsupported('its header is larger than 32 MiB');
        return;
      }
      this.need = info.need;
      return;
    }
    const MS = window.MediaSource || window.ManagedMediaSource;
    if (!info.fragmented) {
      this.unsupported(`${info.reason}, which Media Source Extensions cannot stream`);
      return;
    }
    if (!MS) {
      this.unsupported('this browser has no Media Source Extensions');
      return;
    }
    if (!MS.isTypeSupported(info.mime)) {
      this.unsupported(`this browser cannot play ${info.mime}`);
      return;
    }
    this.info = info;
    this.head = head;
    this.duration = info.duration;
    if (kind === 'mp4') this.indexState = 'tail';
    else if (info.cuesOffset !== null && info.cuesOffset < this.m.size) {
      this.indexState = 'tail';
      this.indexRange = [info.cuesOffset, Math.min(this.m.size, info.cuesOffset + 16)];
    } else {
      this.indexState = 'none';
    }
    this.events.info(info);
    this.attach(MS);
  }

  attach(MS) {
    this.state = 'attaching';
    this.events.status('starting the player');
    const ms = new MS();
    this.ms = ms;
    this.video.disableRemotePlayback = true; // ManagedMediaSource wants an alternative or this
    ms.addEventListener('sourceopen', () => {
      if (this.sb) return;
      try {
        this.sb = ms.addSourceBuffer(this.info.mime);
      } catch (e) {
        this.unsupported(`the browser refused ${this.info.mime} (${e.message})`);
        return;
      }
      this.sb.addEventListener('updateend', () => this.update());
      this.sb.addEventListener('error', () => this.fail(new Error('the browser could not parse the media data')));
      this.setDuration();
      this.sb.appendBuffer(this.head.slice(0, this.info.initEnd));
      this.head = null;
      this.appendCursor = this.info.initEnd;
      this.state = 'playing';
      this.events.status('buffering');
    });
    this.video.src = URL.createObjectURL(ms);
  }

  loadIndex() {
    const size = this.m.size;
    if (this.indexState === 'last-fragment') {
      const tail = this.bytes(Math.max(0, size - TAIL_SCAN), size);
      if (!tail) return;
      this.indexState = 'none';
      const end = media.lastFragmentEnd(tail, this.info.tracks);
      if (end && !this.duration) {
        this.duration = end;
        this.setDuration();
      }
      return;
    }
    if (this.indexState !== 'tail') return;
    if (this.info.kind === 'mp4') {
      if (!this.indexRange) {
        const tail = this.bytes(size - 16, size);
        if (!tail) return;
        const start = media.mfraStart(tail, size);
        if (start === null) {
          // No index: seeking goes by bitrate, which needs the duration.
          this.indexState = this.duration ? 'none' : 'last-fragment';
          return;
        }
        this.indexRange = [start, size];
        this.mediaEnd = start; // the index is no media: MSE is not given it
      }
      const bytes = this.bytes(...this.indexRange);
      if (!bytes) return;
      this.setIndex(media.parseMfra(bytes, this.info.tracks));
      return;
    }
    // WebM: the Cues element's header says how long it is.
    const head = this.bytes(...this.indexRange);
    if (!head) return;
    const end = media.elementEnd(head);
    if (end === null || this.indexRange[0] + end > size) {
      this.indexState = 'none';
      return;
    }
    if (this.indexRange[1] !== this.indexRange[0] + end) {
      this.indexRange = [this.indexRange[0], this.indexRange[0] + end];
      return;
    }
    this.setIndex(media.parseCues(head, this.info));
  }

  setIndex(index) {
    if (!index || !index.length) {
      this.indexState = 'none';
      return;
    }
    this.index = index;
    this.indexState = 'ready';
    if (!this.duration && index.length > 1) {
      // No duration in the header (ffmpeg's empty_moov): the last random-access point plus
      // one average fragment. endOfStream() makes it exact when the end is reached.
      const last = index[index.length - 1].time;
      this.duration = last + last / (index.length - 1);
      this.setDuration();
    }
  }

  setDuration() {
    const ms = this.ms;
    if (!this.duration || !ms || ms.readyState !== 'open' || !this.sb || this.sb.updating) return;
    if (Number.isFinite(ms.duration) && Math.abs(ms.duration - this.duration) < 0.01) return;
    let end = 0;
    const b = this.sb.buffered;
    if (b.length) end = b.end(b.length - 1);
    if (this.duration > end) ms.duration = this.duration;
  }

  /** Append the next verified bytes at the cursor, unless far enough ahead already. */
  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || this.scan) return;
    if (this.ms.readyState === 'open' && !Number.isFinite(this.ms.duration)) this.setDuration();
    if (this.needReset) {
      // A jump in the byte stream: drop the parser's half-read fragment, if any. In the
      // 'ended' state the last append finished the file, so there is none.
      if (this.ms.readyState === 'open') sb.abort();
      this.needReset = false;
    }
    if (this.appendCursor >= this.mediaEnd) {
      if (!this.ended && this.ms.readyState === 'open') {
        this.ended = true;
        this.ms.endOfStream();
      }
      return;
    }
    if (this.bufferedAhead() > MAX_AHEAD) return;
    const n = Math.min(this.swarm.contiguousFrom(this.appendCursor), this.mediaEnd - this.appendCursor, APPEND_CHUNK);
    if (n <= 0) return;
    const read = this.bytes(this.appendCursor, this.appendCursor + n, true);
    if (!read) return;
    // Read before the index was found, it may run into the index, which is no media.
    const bytes = read.subarray(0, Math.min(read.length, this.mediaEnd - this.appendCursor));
    try {
      sb.appendBuffer(bytes);
    } catch (e) {
      if (e.name === 'QuotaExceededError') {
        this.evict();
        return;
      }
      throw e;
    }
    this.appendCursor += bytes.length;
    this.ended = false;
  }

  /** The SourceBuffer is full: free what is well behind the playhead. */
  evict() {
    const t = this.video.currentTime;
    if (t > 20 && !this.sb.updating) this.sb.remove(0, t - 10);
  }

  bufferedAhead() {
    const t = this.video.currentTime;
    const b = this.video.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t < b.end(i)) return b.end(i) - t;
    }
    return 0;
  }

  /** The byte offset the playhead is at, as near as the index or the bitrate tells. */
  playheadOffset() {
    const t = this.video.currentTime;
    const exact = media.offsetForTime(this.index, t);
    if (exact !== null) return exact;
    return Math.min(this.mediaEnd, (this.info ? this.info.initEnd : 0) + t * this.bitrate);
  }

  isBuffered(t) {
    const b = this.video.buffered;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.05 && t < b.end(i) - 0.05) return true;
    return false;
  }

  // -- seeking --------------------------------------------------------------------------------

  onSeeking() {
    if (this.state !== 'playing' || !this.sb) return;
    const t = this.video.currentTime;
    this.seekTarget = t;
    if (this.isBuffered(t)) {
      this.update();
      return;
    }
    const exact = media.offsetForTime(this.index, t);
    if (exact !== null) {
      this.moveCursor(exact);
    } else {
      // No index: estimate from the bitrate, a little early, and find the next fragment.
      const base = this.info.initEnd;
      const estimate = this.duration
        ? base + Math.max(0, (t - 2) / this.duration) * (this.mediaEnd - base)
        : base + Math.max(0, t - 2) * this.bitrate;
      this.scan = { from: Math.min(Math.floor(estimate), this.mediaEnd - 1) };
    }
    this.update();
  }

  moveCursor(offset) {
    if (offset === this.appendCursor) return;
    this.appendCursor = offset;
    this.needReset = true;
    this.ended = false;
  }

  findScanTarget() {
    if (!this.scan) return;
    const from = this.scan.from;
    const n = Math.min(this.swarm.contiguousFrom(from), SCAN_LIMIT);
    if (n <= (this.scan.scanned || 0)) return; // nothing verified since the last look
    // Any read from `from` will do: the verified run grows while a read is in flight, and
    // asking for the exact length would drop that read and start over each time.
    const bytes = this.bytes(from, from + n, true);
    if (!bytes) return;
    this.scan.scanned = bytes.length;
    const at = media.findFragment(this.info.kind, bytes, 0);
    if (at >= 0) {
      this.scan = null;
      this.moveCursor(from + at);
    } else if (bytes.length >= SCAN_LIMIT || from + bytes.length >= this.mediaEnd) {
      this.scan = null;
      this.fail(new Error('could not find where the video continues after the seek'));
    }
  }

  /** A seek that landed just before the first buffered fragment: move to its start. */
  jumpGap() {
    const v = this.video;
    if (v.readyState >= 3 && !v.seeking) return;
    const t = v.currentTime;
    if (this.isBuffered(t)) return;
    const b = v.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) > t && b.start(i) - t < GAP_JUMP) {
        v.currentTime = b.start(i) + 0.01;
        return;
      }
    }
  }

  // -- failures -------------------------------------------------------------------------------

  unsupported(reason) {
    this.state = 'unsupported';
    this.events.unsupported(reason);
    this.swarm.setPriority([], false);
  }

  onVideoError() {
    const err = this.video.error;
    if (!err || this.state === 'unsupported') return;
    this.fail(new Error(err.message || `media error ${err.code}`));
  }

  fail(e) {
    if (this.error) return;
    this.error = e;
    console.error(e);
    this.events.error(`the video could not be played: ${e.message}`);
    this.swarm.setPriority([], false);
  }
}
