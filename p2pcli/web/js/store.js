// The tab's piece store: verified pieces on disk, a few recent ones in memory.
//
// Policy (issue 14: a 4 GiB video must not live in the tab's memory):
// - Pieces go to one file in the Origin Private File System (OPFS), at their offset in the
//   content, written by a dedicated Worker through a sync access handle (store-worker.js).
//   Only pieces that were verified against the manifest are put here: the swarm hashes
//   first, then stores.
// - Memory holds a have-bitmap and an LRU of recently used pieces (the ones the player
//   appends and other peers ask for come in runs), bounded by CACHE_BYTES (at least
//   MIN_CACHE_PIECES). Reads are async: a piece outside the LRU comes back from disk.
// - "Save file" is the OPFS file itself (getFile(): disk-backed), not a Blob of pieces.
// - No browser-side cache across reloads: each tab writes its own file, holds a Web Lock
//   named after it for its lifetime, and removes it on close (best effort on pagehide: the
//   page may die first). The next tab to open removes every file whose lock nobody holds,
//   so a file outlives its tab only until another tab opens; a reload fetches again, which
//   for a swarm that just served us is cheap, and there is no have-list to trust or 4 GiB
//   to re-verify.
// - Where OPFS or its sync access handle is missing (older browsers) every piece stays in
//   memory, as before; `fallbackReason` says why, for the page's status.
// - The first failure of the disk (a write or read the worker refuses, the worker dying)
//   is final: the backend is dead (later calls fail at once), the store goes on in memory,
//   and the pieces that were only on disk count as missing again, so the swarm fetches
//   them once more (`onFailover`). A failing disk thus neither loops nor stalls.
//
// `Lru` and the bookkeeping in `PieceStore` take no I/O of their own; the backends hold it.

export const CACHE_BYTES = 32 * 1024 * 1024;
export const MIN_CACHE_PIECES = 4;
export const OPFS_DIR = 'p2p-pieces';
// A worker call unanswered this long means a worker that died without an error event (the
// browser killed it): give the disk up rather than wait forever. A sync access handle
// writes a piece in milliseconds, so only a dead worker gets near this.
export const WORKER_TIMEOUT = 60000;

/** Least recently used first out; `set` returns the keys it evicted. */
export class Lru {
  constructor(limit) {
    this.limit = Math.max(1, limit);
    this.map = new Map();
  }

  get size() {
    return this.map.size;
  }

  has(key) {
    return this.map.has(key);
  }

  /** The value without making it the most recent. */
  peek(key) {
    return this.map.get(key);
  }

  get(key) {
    const v = this.map.get(key);
    if (v === undefined) return undefined;
    this.map.delete(key); // re-insert: Map keeps insertion order, newest last
    this.map.set(key, v);
    return v;
  }

  set(key, value) {
    this.map.delete(key);
    this.map.set(key, value);
    const evicted = [];
    while (this.map.size > this.limit) {
      const oldest = this.map.keys().next().value;
      this.map.delete(oldest);
      evicted.push(oldest);
    }
    return evicted;
  }
}

/** Every piece in memory: the fallback, and what tests use without a browser. */
export class MemoryBackend {
  constructor() {
    this.kind = 'memory';
    this.pieces = new Map(); // index -> bytes
  }

  async write(index, _at, bytes) {
    this.pieces.set(index, bytes);
  }

  async read(index, _at, length) {
    const b = this.pieces.get(index);
    if (!b || b.length !== length) throw new Error(`piece ${index} is not stored`);
    return b;
  }

  async file(type, count) {
    const parts = [];
    for (let i = 0; i < count; i++) parts.push(this.pieces.get(i));
    return new Blob(parts, { type });
  }

  async close() {}
}

/** One OPFS file per tab and content, written by store-worker.js. */
export class OpfsBackend {
  constructor(worker, name) {
    this.kind = 'opfs';
    this.worker = worker;
    this.name = name;
    this.next = 1;
    this.waiting = new Map(); // message id -> {ok, fail}
    this.dead = null; // the error that killed the worker: every later call fails with it
    this.unlock = () => {}; // releases the Web Lock that keeps other tabs off our file
    worker.onmessage = (e) => {
      const w = this.waiting.get(e.data.id);
      if (!w) return;
      this.waiting.delete(e.data.id);
      if (e.data.ok) w.ok(e.data.bytes);
      else w.fail(new Error(e.data.error));
    };
    worker.onerror = (e) => this.die(new Error(`the storage worker failed: ${e.message || 'no reason given'}`));
    worker.onmessageerror = () => this.die(new Error('the storage worker sent a message that could not be read'));
  }

  /** The worker is gone: fail what waits and everything asked from now on. */
  die(err) {
    if (!this.dead) this.dead = err;
    for (const w of this.waiting.values()) w.fail(this.dead);
    this.waiting.clear();
  }

  /** Opens the file for `contentId`, `size` bytes; throws where OPFS cannot be used. */
  static async open(contentId, size) {
    if (typeof navigator === 'undefined' || !navigator.storage || !navigator.storage.getDirectory) {
      throw new Error('this browser gives pages no Origin Private File System');
    }
    if (typeof Worker === 'undefined') throw new Error('this browser has no Web Workers');
    const tag = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
    const name = `${contentId}.${tag}`;
    // Locked before the file exists: another tab opening now cannot take it for a leftover
    // between our create and our sync access handle.
    const unlock = await holdLock(name);
    await removeUnused().catch(() => {}); // housekeeping: never a reason to fall back
    const worker = new Worker(new URL('./store-worker.js', import.meta.url));
    const backend = new OpfsBackend(worker, name);
    backend.unlock = unlock;
    try {
      await backend.call({ op: 'open', dir: OPFS_DIR, name, size });
    } catch (e) {
      await backend.close().catch(() => {});
      throw e;
    }
    return backend;
  }

  call(msg, transfer = []) {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.next++;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.die(new Error(`the storage worker did not answer for ${WORKER_TIMEOUT / 1000} s`));
      }, WORKER_TIMEOUT);
      const settle = (fn) => (v) => {
        clearTimeout(timer);
        fn(v);
      };
      this.waiting.set(id, { ok: settle(ok), fail: settle(fail) });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  // Copied to the worker (not transferred): the store keeps the bytes in its LRU.
  write(_index, at, bytes) {
    return this.call({ op: 'write', at, bytes });
  }

  read(_index, at, length) {
    return this.call({ op: 'read', at, length });
  }

  async handle() {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(OPFS_DIR);
    return dir.getFileHandle(this.name);
  }

  async file(type) {
    await this.call({ op: 'flush' });
    const f = await (await this.handle()).getFile();
    // A Blob made of a File refers to its bytes on disk: no copy in memory.
    return new Blob([f], { type });
  }

  /** Close and remove the file (also after the worker died: its file is of no use). */
  async close() {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      await this.call({ op: 'close' }).catch(() => {});
      this.worker.terminate();
      this.die(new Error('the piece store is closed'));
      try {
        const root = await navigator.storage.getDirectory();
        const dir = await root.getDirectoryHandle(OPFS_DIR);
        await dir.removeEntry(this.name).catch(() => {});
      } finally {
        this.unlock();
      }
    })();
    return this.closing;
  }
}

const lockName = (fileName) => `${OPFS_DIR}/${fileName}`;

/**
 * Hold the Web Lock for piece file `name` until the returned function is called (or the
 * tab is gone: the browser releases a dead tab's locks). Without Web Locks: a no-op.
 */
async function holdLock(name) {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (!locks) return () => {};
  let release;
  const held = new Promise((ok) => {
    locks.request(lockName(name), () => {
      ok();
      return new Promise((r) => { release = r; });
    }).catch(() => ok());
  });
  await held;
  return () => release && release();
}

/**
 * Delete the piece files of tabs that are gone: every file whose Web Lock nobody holds or
 * waits for (`locks.query()` covers the whole origin). A file another tab has open is
 * also locked by its access handle, so its removal fails and it is kept.
 */
async function removeUnused() {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(OPFS_DIR, { create: true });
  const inUse = new Set();
  if (navigator.locks && navigator.locks.query) {
    const { held = [], pending = [] } = await navigator.locks.query();
    for (const l of [...held, ...pending]) inUse.add(l.name);
  }
  const names = [];
  for await (const name of dir.keys()) names.push(name);
  for (const name of names) {
    if (inUse.has(lockName(name))) continue; // an open tab's, or one opening right now
    await dir.removeEntry(name).catch(() => {}); // in use by an open tab: keep it
  }
}

export class PieceStore {
  /**
   * `manifest`: pieceCount, pieceSize, size, pieceOffset(i), pieceLength(i), piecesFor().
   * `backend`: a promise of a backend (MemoryBackend, OpfsBackend), so the store can be
   * used at once; writes and reads wait for it.
   * `cachePieces`: the LRU's bound in pieces (default: CACHE_BYTES worth).
   * `onFailover({reason, lost})`: called once if the backend fails and the store moved to
   * memory; `lost` are the pieces that were only on the dead backend, no longer held.
   */
  constructor(manifest, backend, { cachePieces = null, onFailover = null } = {}) {
    this.m = manifest;
    const limit = cachePieces ?? Math.max(MIN_CACHE_PIECES, Math.floor(CACHE_BYTES / manifest.pieceSize));
    this.cache = new Lru(limit);
    this.have = new Uint8Array(manifest.pieceCount);
    this.nHave = 0;
    this.backend = null;
    this.fallbackReason = null;
    this.ready = Promise.resolve(backend).then((b) => {
      this.backend = b;
      return b;
    });
    this.peakCached = 0;
    this.diskReads = 0;
    this.failure = null; // why the backend was given up, once it was
    this.onFailover = onFailover;
  }

  /**
   * `backend` (the current one) failed with `err`: give it up for memory, keeping the
   * pieces the LRU still has; the others are missing again. Pieces whose put is under way
   * are not held yet: their put writes them to memory itself.
   */
  failover(backend, err) {
    if (backend !== this.backend) return; // another call failed over already
    if (backend.kind === 'memory') throw err; // nowhere left to go
    this.failure = `${backend.kind} storage failed: ${err.message}`;
    const memory = new MemoryBackend();
    const lost = [];
    for (let i = 0; i < this.m.pieceCount; i++) {
      if (!this.have[i]) continue;
      const bytes = this.cache.peek(i);
      if (bytes) {
        memory.pieces.set(i, bytes);
      } else {
        this.have[i] = 0;
        this.nHave--;
        lost.push(i);
      }
    }
    this.backend = memory;
    this.ready = Promise.resolve(memory);
    backend.close().catch(() => {});
    if (this.onFailover) this.onFailover({ reason: this.failure, lost });
  }

  /**
   * OPFS if the browser has it, else memory. `opts.memory`: memory on purpose (a test or
   * benchmark baseline). The store is usable at once; `ready` says which it became.
   */
  static open(manifest, contentId, opts = {}) {
    let reason = null;
    const backend = (opts.memory ? Promise.reject(new Error('asked to keep pieces in memory'))
      : OpfsBackend.open(contentId, manifest.size))
      .catch((e) => {
        reason = e.message;
        return new MemoryBackend();
      });
    const store = new PieceStore(manifest, backend, opts);
    store.ready = store.ready.then((b) => {
      store.fallbackReason = reason;
      return b;
    });
    return store;
  }

  has(i) {
    return this.have[i] === 1;
  }

  get complete() {
    return this.nHave === this.m.pieceCount;
  }

  /** The piece's bytes if they are in memory now, else null. */
  cached(i) {
    return this.cache.get(i) || null;
  }

  remember(i, bytes) {
    this.cache.set(i, bytes);
    this.peakCached = Math.max(this.peakCached, this.cache.size);
  }

  /** Store verified piece `i`; it counts as held once the backend has it. */
  async put(i, bytes) {
    if (this.has(i)) return;
    this.remember(i, bytes);
    const backend = await this.ready;
    try {
      await backend.write(i, this.m.pieceOffset(i), bytes);
    } catch (e) {
      this.failover(backend, e);
      await this.backend.write(i, this.m.pieceOffset(i), bytes);
    }
    if (!this.has(i)) {
      this.have[i] = 1;
      this.nHave++;
    }
  }

  /** Piece `i`'s bytes (from memory, else from disk), or null if not held. */
  async get(i) {
    if (!this.has(i)) return null;
    const hit = this.cached(i);
    if (hit) return hit;
    const backend = await this.ready;
    this.diskReads++;
    let bytes;
    try {
      bytes = await backend.read(i, this.m.pieceOffset(i), this.m.pieceLength(i));
    } catch (e) {
      this.failover(backend, e);
      return this.get(i); // from memory if the LRU kept it, else null: it is missing now
    }
    this.remember(i, bytes);
    return bytes;
  }

  /** How many held bytes run from `start` without a gap. */
  contiguousFrom(start) {
    const m = this.m;
    if (start >= m.size) return 0;
    let i = Math.floor(start / m.pieceSize);
    while (i < m.pieceCount && this.have[i]) i++;
    return Math.max(0, Math.min(m.size, i * m.pieceSize) - start);
  }

  /** The held bytes [start, end) as one array, or null if a piece is missing. */
  async read(start, end) {
    const m = this.m;
    end = Math.min(end, m.size);
    const range = m.piecesFor(start, end);
    if (!range) return new Uint8Array(0);
    for (let i = range[0]; i <= range[1]; i++) if (!this.has(i)) return null;
    const out = new Uint8Array(end - start);
    let pos = 0;
    for (let i = range[0]; i <= range[1]; i++) {
      const piece = await this.get(i);
      if (!piece) return null;
      const from = Math.max(start - m.pieceOffset(i), 0);
      const to = Math.min(end - m.pieceOffset(i), m.pieceLength(i));
      out.set(piece.subarray(from, to), pos);
      pos += to - from;
    }
    return out;
  }

  /** The whole content as a Blob (disk-backed with OPFS); only once every piece is held. */
  async file(type) {
    if (!this.complete) throw new Error('the file is not complete');
    const backend = await this.ready;
    return backend.file(type, this.m.pieceCount);
  }

  async close() {
    const backend = await this.ready;
    await backend.close();
  }

  stats() {
    return {
      backend: this.backend ? this.backend.kind : null,
      fallbackReason: this.fallbackReason,
      failure: this.failure,
      have: this.nHave,
      cached: this.cache.size,
      cacheLimit: this.cache.limit,
      peakCached: this.peakCached,
      diskReads: this.diskReads,
    };
  }
}
