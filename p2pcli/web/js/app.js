// The page: the "open a link" form, and the watch view that wires the swarm to the player
// and renders what happens. Also exposes the page's state on `window.p2p` (for people in
// the console and for tests/test_browser.py).

import { FileView, firstVideo } from './fileview.js';
import { LinkError, parseTarget, socketUrl, watchPath } from './link.js';
import { Player } from './player.js';
import { implementation as hashImplementation, fromHex, sha256, toHex } from './sha256.js';
import { Swarm } from './swarm.js';

const $ = (id) => document.getElementById(id);
const NO_PEER_HINT_MS = 10000;

function human(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

const rate = (n) => `${human(n)}/s`;

/** Piece sizes are powers of two: 64 KiB reads better than 65.5 KB. */
const binary = (n) => (n >= 1048576 ? `${n / 1048576} MiB` : `${n / 1024} KiB`);

const MIME_BY_EXTENSION = {
  mp4: 'video/mp4', m4v: 'video/mp4', m4a: 'audio/mp4', webm: 'video/webm', mkv: 'video/x-matroska',
  mp3: 'audio/mpeg', ogg: 'audio/ogg', ogv: 'video/ogg', opus: 'audio/ogg', wav: 'audio/wav',
  flac: 'audio/flac', mov: 'video/quicktime',
};

function mimeFor(name) {
  const ext = name.includes('.') ? name.split('.').pop().toLowerCase() : '';
  return MIME_BY_EXTENSION[ext] || 'application/octet-stream';
}

// -- messages -------------------------------------------------------------------------------

const messages = [];

function say(level, text) {
  const last = messages[messages.length - 1];
  if (last && last.text === text) {
    last.count++;
  } else {
    messages.push({ level, text, count: 1, t: performance.now() });
  }
  const list = $('messages');
  list.replaceChildren(...messages.slice(-8).map((m) => {
    const li = document.createElement('li');
    li.className = `message ${m.level}`;
    li.textContent = m.count > 1 ? `${m.text} (×${m.count})` : m.text;
    return li;
  }));
  (level === 'error' ? console.error : console.info)(`[p2p] ${text}`);
}

// -- the form -------------------------------------------------------------------------------

function setupForm() {
  $('open-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const box = $('form-error');
    try {
      const target = parseTarget($('open-input').value);
      box.hidden = true;
      location.href = watchPath(target, location.origin);
    } catch (err) {
      if (!(err instanceof LinkError)) throw err;
      box.textContent = err.message;
      box.hidden = false;
    }
  });
}

// -- the watch view -------------------------------------------------------------------------

function watch(hash, params) {
  $('watch').hidden = false;
  $('open-input').value = location.href;
  const signal = socketUrl(params.get('signal') || location.origin);
  const token = params.get('token');
  $('footer').textContent = `content hash ${hash} · signaling server ${signal}`;
  if (typeof window.io !== 'function') {
    say('error', 'the Socket.IO client did not load (/web/vendor/socket.io.min.js); reload the page');
    return;
  }
  const video = $('video');
  // Debugging and benchmarks: ?store=memory keeps every piece in memory (the old way),
  // ?cache=N bounds the in-memory pieces to N.
  const store = { memory: params.get('store') === 'memory' };
  const cache = Number.parseInt(params.get('cache') || '', 10);
  if (cache > 0) store.cachePieces = cache;
  const swarm = new Swarm({ contentHash: fromHex(hash), signalUrl: signal, token, io: window.io, store });
  // Leaving for good (not into the back/forward cache): close the peers and remove the
  // piece file now rather than when the next tab opens. Best effort: the removal is async
  // and the page may be gone first; the next tab's clean-up catches what this misses.
  window.addEventListener('pagehide', (e) => {
    if (!e.persisted) swarm.close();
  });
  let player = null;
  let mode = 'connecting';
  let announcedAt = null;
  let hinted = false;
  let download = null;
  let view = null; // a folder share: the file played (fileview.js); null for a single file

  const status = (text) => {
    $('status').textContent = text;
  };

  swarm.on('signaling', (ev) => {
    if (ev.state === 'connected') {
      status('connected to the signaling server; looking for peers');
    } else if (ev.state === 'announced') {
      announcedAt = announcedAt || performance.now();
      if (!swarm.manifest) status(ev.peers ? `connecting to ${ev.peers} peer(s)` : 'waiting for a peer that has this content');
    } else {
      say('warning', ev.message);
    }
  });
  swarm.on('warning', (ev) => say('warning', ev.message));
  swarm.on('error', (ev) => say('error', ev.message));
  swarm.on('storage', (st) => {
    if (st.backend !== 'opfs') {
      say(store.memory ? 'info' : 'warning', `the file is kept in memory, not on disk: ${st.fallbackReason}`);
    }
  });
  swarm.on('peer-left', (ev) => {
    if (ev.banned) say('error', `dropped peer ${ev.id}: ${ev.reason}`);
    else if (ev.warn && ev.reason) say('warning', `dropped peer ${ev.id}: ${ev.reason}`);
  });
  swarm.on('piece-rejected', (ev) => {
    say('warning', `piece ${ev.piece} failed verification (from ${ev.peers.join(', ')}); fetching it again`);
  });
  swarm.on('manifest', ({ manifest }) => {
    document.title = `${manifest.name} · p2p`;
    $('title').textContent = manifest.name;
    $('subtitle').textContent = `${human(manifest.size)}, ${manifest.pieceCount} pieces of ${binary(manifest.pieceSize)}`
      + ` · verified with ${hashImplementation === 'subtle' ? 'SubtleCrypto' : 'JavaScript'} SHA-256`;
    let source = swarm;
    if (manifest.files) {
      // A folder share: list its files; play the one ?file=N names, else the first video.
      const wanted = Number.parseInt(params.get('file') || '', 10);
      const index = wanted >= 0 && wanted < manifest.files.length ? wanted : firstVideo(manifest.files);
      showFiles(manifest, index);
      if (index < 0) {
        mode = 'download';
        $('player-box').hidden = true;
        say('info', `this share holds ${manifest.files.length} files and none looks like a video; it is downloaded and verified whole`);
        status('downloading');
        return;
      }
      view = new FileView(swarm, manifest.files[index]);
      source = view;
      $('title').textContent = `${manifest.name} / ${manifest.files[index].path}`;
    }
    mode = 'probing';
    status('manifest verified; fetching the start of the file');
    player = new Player(video, source, {
      status: (text) => { mode = 'playing'; status(text); },
      info: (info) => { $('subtitle').textContent += ` · ${info.mime}`; },
      unsupported: (reason) => {
        mode = 'download';
        $('player-box').hidden = true;
        say('info', `this file cannot be streamed here: ${reason}. It is downloaded and verified whole instead; save it (or watch it here, if the browser can) once complete.`);
        status('downloading');
      },
      error: (text) => {
        mode = 'download';
        say('error', `${text}. The file keeps downloading; save it once complete.`);
      },
    });
    player.update();
    startPlayback(video);
  });
  swarm.on('piece', (ev) => {
    if (player) player.update();
    if (ev.complete) {
      finished();
      render(swarm, player, swarm.stats());
    }
  });
  swarm.on('stats', (st) => {
    render(swarm, player, st);
    if ((mode === 'playing' && player) || mode === 'whole') {
      if (video.readyState >= 3 && !video.paused) status('playing');
      else if (video.seeking || video.readyState < 3) status('buffering');
      else if (video.paused) status(video.ended ? 'ended' : 'paused');
    }
    if (!swarm.manifest && st.busy.length && !st.peers.some((p) => p.state === 'connected')) {
      // Peers said "busy": they are there and the network is fine, their slots are taken.
      status(`${st.busy.length} peer(s) with this content have no free connection slot yet; trying again`);
    }
    if (!swarm.manifest && announcedAt && !hinted && performance.now() - announcedAt > NO_PEER_HINT_MS) {
      hinted = true;
      if (st.busy.length) {
        say('info', `the ${st.busy.length} peer(s) with this content already serve as many peers as they allow (no free connection slot); still trying: you get in as soon as one frees`);
      } else {
        say('warning', 'no peer has sent this content yet: is "p2p seed" running for it on the same signaling server? Still waiting.');
      }
    }
  });

  async function finished() {
    // A folder share: what is saved (and played whole) is the selected file, a slice of
    // the share's bytes.
    const m = view ? view.manifest : swarm.manifest;
    try {
      // On disk (OPFS): the browser reads it from there, it is not copied into memory.
      download = await swarm.store.file(mimeFor(m.name));
      if (view) download = download.slice(view.base, view.base + m.size, mimeFor(m.name));
    } catch (e) {
      say('error', `could not read the downloaded file back from storage: ${e.message}`);
      return;
    }
    if (swarm.manifest.files && !view) return; // no file chosen: nothing to save alone
    const button = $('save');
    button.disabled = false;
    $('save-note').textContent = `${human(m.size)}, every piece verified`;
    button.onclick = () => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(download);
      a.download = m.name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    };
    if (mode === 'download') {
      status('complete');
      const type = mimeFor(m.name);
      if (type !== 'application/octet-stream' && video.canPlayType(type)) {
        // The whole verified file: the browser plays it natively if it can.
        video.src = URL.createObjectURL(download);
        mode = 'whole';
        $('player-box').hidden = false;
        startPlayback(video);
      }
    }
  }

  window.p2p = {
    swarm,
    /** The piece store (store.js), once the manifest is known: stats() for tests. */
    get store() {
      return swarm.store;
    },
    get player() {
      return player;
    },
    messages,
    state: () => snapshot(swarm, player, video, mode),
    /** SHA-256 of the bytes the page holds for each verified piece, recomputed now. */
    async digests() {
      const out = {};
      const n = swarm.manifest ? swarm.manifest.pieceCount : 0;
      for (let i = 0; i < n; i++) {
        const piece = swarm.has(i) ? await swarm.store.get(i) : null;
        if (piece) out[i] = toHex(await sha256(piece));
      }
      return out;
    },
  };
  swarm.start();
}

/** A folder share's files; each video is a link that plays it (?file=INDEX). */
function showFiles(manifest, playing) {
  const list = $('files');
  list.hidden = false;
  const items = manifest.files.map((f, i) => {
    const li = document.createElement('li');
    const isVideo = firstVideo([f]) === 0;
    let label;
    if (isVideo && i !== playing) {
      label = document.createElement('a');
      const params = new URLSearchParams(location.search);
      params.set('file', String(i));
      label.href = `${location.pathname}?${params}`;
    } else {
      label = document.createElement('span');
    }
    label.textContent = f.path; // a name from the manifest: text, never markup
    li.append(label, ` ${human(f.size)}${i === playing ? ' (playing)' : ''}`);
    li.dataset.index = String(i);
    return li;
  });
  for (const d of manifest.folders) {
    const li = document.createElement('li');
    li.textContent = `${d}/ (empty folder)`;
    items.push(li);
  }
  list.querySelector('ol').replaceChildren(...items);
}

function startPlayback(video) {
  video.autoplay = true;
  video.play().catch(() => {
    // Browsers refuse sound without a click first: start muted, the controls unmute.
    video.muted = true;
    video.play().then(
      () => say('info', 'started muted (the browser blocks sound until you interact); unmute with the controls'),
      () => {},
    );
  });
}

function snapshot(swarm, player, video, mode) {
  const st = swarm.stats();
  const verified = [];
  const count = swarm.manifest ? swarm.manifest.pieceCount : 0;
  for (let i = 0; i < count; i++) if (swarm.has(i)) verified.push(i);
  const buffered = [];
  for (let i = 0; i < video.buffered.length; i++) buffered.push([video.buffered.start(i), video.buffered.end(i)]);
  return {
    sid: swarm.sid,
    mode,
    name: swarm.manifest && swarm.manifest.name,
    size: swarm.manifest && swarm.manifest.size,
    pieceCount: swarm.manifest && swarm.manifest.pieceCount,
    pieceSize: swarm.manifest && swarm.manifest.pieceSize,
    files: swarm.manifest && swarm.manifest.files,
    playing: player && player.swarm.file ? player.swarm.file.path : null,
    verified,
    pieceSources: Object.fromEntries(swarm.pieceSources),
    receivedFrom: { ...swarm.receivedFrom },
    sentTo: { ...swarm.sentTo },
    rejectedPieces: swarm.rejectedPieces.slice(),
    dropped: swarm.dropped.slice(),
    busy: st.busy,
    peers: st.peers,
    downRate: st.downRate,
    upRate: st.upRate,
    video: {
      readyState: video.readyState,
      currentTime: video.currentTime,
      duration: video.duration,
      paused: video.paused,
      seeking: video.seeking,
      buffered,
      error: video.error && video.error.message,
    },
    player: player && {
      state: player.state,
      mime: player.info && player.info.mime,
      appendCursor: player.appendCursor,
      index: player.indexState,
      error: player.error && player.error.message,
    },
    messages: messages.map((m) => ({ level: m.level, text: m.text })),
    store: st.store,
  };
}

// -- rendering ------------------------------------------------------------------------------

function render(swarm, player, st) {
  const m = swarm.manifest;
  $('stat-peers').textContent = String(st.peers.filter((p) => p.state === 'connected').length);
  $('stat-down').textContent = rate(st.downRate);
  $('stat-up').textContent = rate(st.upRate);
  $('stat-buffer').textContent = player && player.state === 'playing' ? `${player.bufferedAhead().toFixed(1)} s` : '–';
  $('stat-verified').textContent = m ? `${st.have} / ${m.pieceCount} (${Math.floor((100 * st.have) / Math.max(1, m.pieceCount))}%)` : '–';
  $('peers').tBodies[0].replaceChildren(...st.peers.map((p) => {
    const tr = document.createElement('tr');
    const cells = [
      p.id,
      p.connection ? `${p.state} (${p.connection})` : p.state,
      p.hasAll ? 'all' : String(p.pieces ?? '?'),
      rate(p.downRate), rate(p.upRate), human(p.received), human(p.sent),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 0) td.className = 'id';
      tr.append(td);
    });
    return tr;
  }));
  drawPieces(swarm, player);
}

function drawPieces(swarm, player) {
  const canvas = $('pieces');
  const m = swarm.manifest;
  if (!m || !swarm.picker) return;
  const width = canvas.clientWidth || canvas.width;
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext('2d');
  const styles = getComputedStyle(document.documentElement);
  const color = (name) => styles.getPropertyValue(name).trim();
  ctx.fillStyle = color('--missing');
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const n = m.pieceCount;
  const scale = canvas.width / n;
  const flying = new Set(swarm.picker.active.keys());
  for (let i = 0; i < n; i++) {
    let fill = null;
    if (swarm.has(i)) fill = color('--accent');
    else if (flying.has(i)) fill = color('--flying');
    if (!fill) continue;
    ctx.fillStyle = fill;
    const x = Math.floor(i * scale);
    ctx.fillRect(x, 0, Math.max(1, Math.floor((i + 1) * scale) - x), canvas.height);
  }
  if (player && player.state === 'playing') {
    const base = player.swarm.base || 0; // a folder share's file starts inside the share
    const x = Math.floor(((base + player.playheadOffset()) / m.size) * canvas.width);
    ctx.fillStyle = '#fff';
    ctx.fillRect(Math.min(x, canvas.width - 2), 0, 2, canvas.height);
  }
}

// -- start ----------------------------------------------------------------------------------

setupForm();
const match = location.pathname.match(/^\/watch\/([0-9a-fA-F]{64})\/?$/);
if (match) {
  watch(match[1].toLowerCase(), new URLSearchParams(location.search));
} else {
  $('home').hidden = false;
  $('open-input').focus();
}
