// The swarm: every peer connection for one content hash, and what flows over them.
//
// The browser counterpart of p2pcli/swarm/. Decisions come from the sans-IO parts
// (wire.PeerProtocol validates each peer, picker.Picker chooses requests); this module
// wires them to RTCPeerConnections, the Socket.IO signaling client and the piece store
// (store.js: on disk, a few recent pieces in memory), and reports what happens as events.
// A tab is a full peer: it serves every piece it holds to other tabs and to CLI fetchers.
//
// Signaling (docs/PROTOCOL.md section 2): on `peer-list` the newcomer offers to everyone
// listed; peers already present answer. Candidates are trickled, each sent only once the
// remote has our description.

import { decodeVerified } from './manifest.js';
import { HIGH_WATER, PeerLink } from './peer.js';
import { Picker } from './picker.js';
import { toHex } from './sha256.js';
import { CACHE_BYTES, PieceStore } from './store.js';
import * as wire from './wire.js';

// What this page advertises as max_block: the largest PIECE payload it can receive.
// Chromium and Firefox take 256 KiB messages, so the protocol's ceiling.
export const MAX_BLOCK = wire.MAX_BLOCK_LIMIT;
const MAX_MANIFEST = 16 * 1024 * 1024;
const MAX_QUEUED_REQUESTS = 512;
const MIN_SLOTS = 2;
const MAX_SLOTS = 48;
const START_SLOTS = 8;
const BAD_PIECE_STRIKES = 3;
const MAX_REFUSALS = 8;
const HANDSHAKE_TIMEOUT = 10000;
const CONNECT_TIMEOUT = 15000;
const TICK = 500;
// Bytes of whole pieces being hashed or written to storage at most before we stop asking
// for more: a disk slower than the network must not pile pieces up in memory.
export const MAX_BACKLOG = CACHE_BYTES;
// The prefix of a refusal for want of a connection slot (PROTOCOL.md 3.3, rule 8), in a
// CLOSE reason or the `busy` field of an answer: "try again later", not an error.
export const BUSY = 'busy: ';

/**
 * Milliseconds before offering again to a peer that said it was busy, `attempt` >= 1:
 * 2 s for the first four (a seeder frees an idle peer's slot within 5 s of a knock), then
 * doubling to 30 s. The same schedule as p2pcli/slots.py's retry_delay.
 */
export function retryDelay(attempt) {
  return 1000 * Math.min(30, 2 * 2 ** Math.max(0, attempt - 4));
}

/**
 * Offers in a row to a peer whose links end without a CLOSE and bring us nothing. A link
 * that ends so (a Wi-Fi blip, the peer's SCTP association giving up) while we still
 * want pieces and the peer is still in the signaling room is offered again on the busy
 * schedule (`retryDelay`), by one side only so two offers never cross: the side that
 * offered it, or the side that wants pieces from a peer that has them all (that peer
 * wants nothing and never redials). The same rule as p2pcli/swarm/admission.py.
 */
export const MAX_REDIALS = 4;

/** Exponentially weighted bytes per second. */
export class Rate {
  constructor(halfLife = 2000) {
    this.halfLife = halfLife;
    this.value = 0;
    this.pending = 0;
    this.last = performance.now();
  }

  add(n) {
    this.pending += n;
  }

  update(now) {
    const dt = now - this.last;
    if (dt >= 250) {
      const w = 0.5 ** (dt / this.halfLife);
      this.value = w * this.value + (1 - w) * (this.pending * 1000 / dt);
      this.pending = 0;
      this.last = now;
    }
    return this.value;
  }
}

class Session {
  constructor(swarm, id, offerer) {
    this.id = id; // the remote's signaling id
    this.offerer = offerer;
    this.proto = new wire.PeerProtocol(swarm.contentHash, swarm.peerId, MAX_BLOCK);
    this.link = null;
    this.hasAll = false;
    this.pieces = new Set();
    this.pendingBitfield = null;
    this.announced = false; // told to the picker
    this.manifestBuf = [];
    this.manifestLength = 0;
    this.serveQueue = [];
    this.bytesDown = 0;
    this.bytesUp = 0;
    this.rate = new Rate();
    this.upRate = new Rate();
    this.slots = START_SLOTS;
    this.strikes = 0;
    this.lastData = performance.now();
    this.refused = new Set();
    this.dropped = null;
    this.connection = null;
    this.timers = [];
    this.greeted = false; // our HANDSHAKE is sent
    // How often this peer may ask for our manifest depends on its size (wire.js).
    if (swarm.manifest) this.proto.setLocalManifestSize(swarm.manifest.encoded.length);
  }

  get ready() {
    return this.proto.remote !== null && this.link !== null && this.link.open;
  }

  has(piece) {
    return (this.hasAll || this.pieces.has(piece)) && !this.refused.has(piece);
  }

  send(bytes) {
    if (bytes && this.link) this.link.send(bytes);
  }
}

/** The STUN/TURN servers of an `ice-config` payload (a browser RTCConfiguration). */
export function iceServersFrom(cfg) {
  const entries = cfg && Array.isArray(cfg.iceServers) ? cfg.iceServers.slice(0, 8) : [];
  const out = [];
  for (const e of entries) {
    if (!e || typeof e !== 'object') continue;
    const urls = (typeof e.urls === 'string' ? [e.urls] : Array.isArray(e.urls) ? e.urls : [])
      .filter((u) => typeof u === 'string' && /^(stun|turns?):/.test(u));
    if (!urls.length) continue;
    const server = { urls };
    if (typeof e.username === 'string') server.username = e.username;
    if (typeof e.credential === 'string') server.credential = e.credential;
    out.push(server);
  }
  return out;
}

export class Swarm {
  /**
   * `opts`: {contentHash: Uint8Array, signalUrl, token, iceServers, maxPeers, io, store}
   * `store`: options for PieceStore.open ({memory, cachePieces}).
   * `maxBacklog`: bytes of pieces being hashed or stored before requests pause (tests).
   * Events (`on(name, fn)`): signaling, manifest, storage, piece, piece-rejected,
   * peer-joined, peer-left, warning, error, stats.
   */
  constructor(opts) {
    this.contentHash = opts.contentHash;
    this.contentId = toHex(opts.contentHash);
    this.signalUrl = opts.signalUrl;
    this.token = opts.token || null;
    this.iceServers = opts.iceServers || [];
    this.maxPeers = opts.maxPeers || 32;
    this.io = opts.io;
    this.storeOptions = opts.store || {};
    this.peerId = crypto.getRandomValues(new Uint8Array(16));
    this.sessions = new Map();
    this.banned = new Set();
    this.bannedIds = new Set();
    this.busyPeers = new Map(); // said busy: signaling id -> {attempts, at (retry time)}
    this.lostPeers = new Map(); // link ended without a CLOSE: signaling id -> when to offer again
    this.redials = new Map(); // signaling id -> offers made since a lost link last brought data
    this.manifest = null;
    this.picker = null;
    this.store = null; // verified pieces (store.js), once the manifest is known
    this.buffers = new Map(); // piece -> bytes being assembled
    this.contributors = new Map(); // piece -> Set of session ids
    this.verifying = new Set();
    this.backlog = 0; // bytes of the pieces being verified or stored
    this.maxBacklog = opts.maxBacklog || MAX_BACKLOG;
    this.halted = null; // why downloading stopped for good (storage failed in memory too)
    this.listeners = new Map();
    this.downRate = new Rate();
    this.upRate = new Rate();
    this.bytesDown = 0;
    this.bytesUp = 0;
    this.receivedFrom = {}; // signaling id -> bytes received, departed peers included
    this.sentTo = {};
    this.pieceSources = new Map(); // piece -> ids of the peers whose blocks made it
    this.rejectedPieces = [];
    this.dropped = []; // {id, reason}
    this.socket = null;
    this.sid = null;
    this.ticker = null;
  }

  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, []);
    this.listeners.get(name).push(fn);
  }

  emit(name, data = {}) {
    for (const fn of this.listeners.get(name) || []) {
      try {
        fn(data);
      } catch (e) {
        console.error(`listener for ${name} failed`, e);
      }
    }
  }

  // -- lifecycle ------------------------------------------------------------------------------

  start() {
    const socket = this.io(this.signalUrl, {
      transports: ['websocket', 'polling'],
      auth: this.token ? { token: this.token } : undefined,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    this.socket = socket;
    socket.on('connect', () => {
      this.sid = socket.id;
      this.emit('signaling', { state: 'connected', url: this.signalUrl, sid: socket.id });
      // First connection and every reconnection: the server forgot our rooms.
      socket.emit('announce', { hash: this.contentId, peerId: toHex(this.peerId) });
    });
    socket.on('connect_error', (err) => {
      this.emit('signaling', {
        state: 'unreachable',
        message: `cannot reach the signaling server at ${this.signalUrl} (${err.message}); retrying`,
      });
    });
    socket.on('disconnect', (reason) => {
      this.emit('signaling', {
        state: 'disconnected',
        message: `lost the signaling server (${reason}); open connections go on, reconnecting`,
      });
    });
    socket.on('peer-list', (data) => {
      if (!data || !Array.isArray(data.peers) || (data.hash && data.hash !== this.contentId)) return;
      this.emit('signaling', { state: 'announced', peers: data.peers.length });
      for (const p of data.peers) if (typeof p === 'string') this.maybeConnect(p);
    });
    socket.on('peer-left', (data) => {
      if (data) this.busyPeers.delete(data.peerId); // gone: nothing to retry
      if (data) this.forgetRedials(data.peerId);
      const s = data && this.sessions.get(data.peerId);
      if (s) s.leftRoom = true; // if its link ends now, it is gone for good
      // Once connected, WebRTC no longer needs the server: keep the link.
      if (s && !s.proto.remote && !(s.link && s.link.open)) this.drop(s, null);
    });
    for (const kind of ['offer', 'answer', 'ice-candidate']) {
      socket.on(kind, (data) => {
        if (data && typeof data === 'object' && typeof data.fromPeer === 'string') {
          this.onSignal(kind, data.fromPeer, data).catch((e) => console.warn(kind, e));
        }
      });
    }
    socket.on('ice-config', (cfg) => {
      // STUN/TURN servers the signaling server hands out, for connections made from now on.
      const servers = iceServersFrom(cfg);
      if (servers.length) this.iceServers = servers;
    });
    socket.on('error', (data) => {
      const what = data && data.message ? data.message : JSON.stringify(data);
      this.emit('warning', { message: `the signaling server refused a message: ${what}` });
    });
    this.ticker = setInterval(() => this.tick(), TICK);
  }

  close() {
    clearInterval(this.ticker);
    for (const s of [...this.sessions.values()]) this.drop(s, null);
    if (this.socket) this.socket.close();
    if (this.store) this.store.close().catch(() => {});
  }

  get usablePeers() {
    return [...this.sessions.values()].filter((s) => s.ready);
  }

  // -- signaling ------------------------------------------------------------------------------

  maybeConnect(id) {
    if (id === this.sid || this.sessions.has(id) || this.banned.has(id)) return;
    if (this.sessions.size >= this.maxPeers) return;
    const s = new Session(this, id, true);
    this.sessions.set(id, s);
    s.link = this.makeLink(s);
    this.runSession(s);
    s.link.makeOffer().then(
      (offer) => this.signal('offer', id, { offer }),
      (e) => this.drop(s, `could not create an offer: ${e.message}`, { warn: true }),
    );
  }

  signal(kind, target, payload) {
    if (this.socket) this.socket.emit(kind, { ...payload, targetPeer: target, hash: this.contentId });
  }

  makeLink(s) {
    return new PeerLink(this.iceServers, {
      candidate: (c) => this.signal('ice-candidate', s.id, { candidate: c }),
      open: () => this.onOpen(s),
      message: (m) => this.onMessage(s, m),
      low: () => this.pumpServe(s),
      closed: (reason) => {
        if (this.sessions.get(s.id) !== s) return;
        // Still ours: the link ended without a CLOSE, and not by our doing.
        if (s.link.opened && !s.dropped) this.connectionLost(s);
        this.drop(s, s.dropped || reason);
      },
    });
  }

  async onSignal(kind, from, data) {
    if (data.hash !== undefined && data.hash !== this.contentId) return;
    try {
      if (kind === 'offer') {
        if (this.banned.has(from)) return;
        const old = this.sessions.get(from);
        if (old) this.drop(old, null); // the peer restarted its side
        if (this.sessions.size >= this.maxPeers) {
          // Say so rather than leave it waiting for an answer: it retries later quietly.
          this.signal('answer', from, { busy: `${BUSY}all ${this.maxPeers} connection slots are taken` });
          return;
        }
        const s = new Session(this, from, false);
        this.sessions.set(from, s);
        s.link = this.makeLink(s);
        this.runSession(s);
        const answer = await s.link.answerOffer(data.offer || data);
        this.signal('answer', from, { answer });
        s.link.startTrickle();
      } else if (kind === 'answer') {
        const s = this.sessions.get(from);
        if (s && s.offerer && typeof data.busy === 'string') {
          // No slot for us there now: not a bad answer, offer again later.
          this.refusedBusy(s, data.busy);
          this.drop(s, null);
        } else if (s && s.offerer) {
          await s.link.acceptAnswer(data.answer || data);
        }
      } else {
        const s = this.sessions.get(from);
        if (s) await s.link.addCandidate(data.candidate);
      }
    } catch (e) {
      const s = this.sessions.get(from);
      if (s) this.drop(s, `bad ${kind}: ${e.message}`, { warn: true });
    }
  }

  /** `s` has no connection slot for us now: offer again later, and do not blame anyone. */
  refusedBusy(s, reason) {
    const attempts = (this.busyPeers.has(s.id) ? this.busyPeers.get(s.id).attempts : 0) + 1;
    this.busyPeers.set(s.id, { attempts, at: performance.now() + retryDelay(attempts) });
    this.emit('busy', { id: s.id, reason, attempts });
  }

  /** Offer again to the peers that said busy, each on its own back-off schedule. */
  retryBusy(now) {
    for (const [id, b] of this.busyPeers) {
      if (now >= b.at && !this.sessions.has(id)) {
        b.at = now + retryDelay(b.attempts + 1);
        this.maybeConnect(id);
      }
    }
  }

  /** We still want something from peers: the manifest, or pieces. */
  get wanting() {
    return !this.halted && (!this.manifest || Boolean(this.picker && !this.picker.complete));
  }

  /** `s` announced every piece: it wants nothing from anyone. */
  hasEverything(s) {
    return s.hasAll || Boolean(this.manifest && s.pieces.size === this.manifest.pieceCount);
  }

  /** `s`'s open link ended without a CLOSE: offer again later, if it is ours to (MAX_REDIALS). */
  connectionLost(s, now = performance.now()) {
    if (s.bytesDown) this.redials.delete(s.id); // it worked for a while: a new blip, a new count
    const made = this.redials.get(s.id) || 0;
    if (!this.wanting || s.leftRoom || this.banned.has(s.id) || made >= MAX_REDIALS) return;
    if (!(s.offerer || this.hasEverything(s))) return; // the other side offers again
    this.lostPeers.set(s.id, now + retryDelay(made + 1));
  }

  /** Offer again to the peers whose links were lost, while we want pieces. */
  redialLost(now) {
    for (const [id, at] of this.lostPeers) {
      if (!this.wanting) {
        this.lostPeers.delete(id);
      } else if (now >= at && !this.sessions.has(id)) {
        const made = (this.redials.get(id) || 0) + 1;
        this.redials.set(id, made);
        // The next try, should this one not get through.
        if (made < MAX_REDIALS) this.lostPeers.set(id, now + retryDelay(made + 1));
        else this.lostPeers.delete(id);
        this.maybeConnect(id);
      }
    }
  }

  /** Never redial `id`: it left the room, sent CLOSE, or was banned. */
  forgetRedials(id) {
    this.lostPeers.delete(id);
    this.redials.delete(id);
  }

  // -- one peer -------------------------------------------------------------------------------

  runSession(s) {
    s.timers.push(setTimeout(() => {
      if (this.sessions.get(s.id) === s && !s.link.open) this.drop(s, 'connection timed out');
    }, CONNECT_TIMEOUT));
  }

  onOpen(s) {
    if (this.sessions.get(s.id) !== s || s.greeted) return;
    s.greeted = true;
    s.lastData = performance.now();
    s.send(s.proto.handshake());
    s.timers.push(setTimeout(() => {
      if (this.sessions.get(s.id) === s && !s.proto.remote) {
        // A peer that left the room meanwhile (its process died) is gone, not hostile.
        if (s.leftRoom) this.drop(s, null);
        else this.drop(s, 'no handshake within 10 s', { ban: true });
      }
    }, HANDSHAKE_TIMEOUT));
    s.link.connectionKind().then((kind) => {
      s.connection = kind;
    });
  }

  /** Forget a peer. `ban`: it misbehaved, never talk to it again; `warn`: tell the user. */
  drop(s, reason, { ban = false, warn = false } = {}) {
    if (this.sessions.get(s.id) !== s) return;
    this.sessions.delete(s.id);
    if (reason && !s.dropped) s.dropped = reason;
    s.timers.forEach(clearTimeout);
    if (ban) {
      this.banned.add(s.id);
      this.forgetRedials(s.id);
      if (s.proto.remote) this.bannedIds.add(toHex(s.proto.remote.peerId));
    }
    if (reason && s.link && s.link.open) s.send(wire.encodeClose(reason));
    if (this.picker && s.announced) this.picker.removePeer(s.id, s.hasAll ? null : s.pieces);
    if (s.link) {
      // CLOSE first, then close: give the message a moment to leave.
      const link = s.link;
      if (reason && link.open) setTimeout(() => link.close('dropped'), 200);
      else link.close('dropped');
    }
    if (s.proto.remote || ban || warn) {
      const why = reason || s.dropped || null;
      this.dropped.push({ id: s.id, reason: why, banned: ban });
      this.emit('peer-left', {
        id: s.id, reason: why, banned: ban, warn, received: s.bytesDown, sent: s.bytesUp,
      });
    }
    this.refillAll();
  }

  onMessage(s, data) {
    if (this.sessions.get(s.id) !== s) return;
    // Chromium can deliver the remote's first message before the channel's open event: our
    // HANDSHAKE must still go out before anything we answer (seen: HAVE_ALL first, and the
    // remote dropped us for "first message was not a handshake").
    if (!s.greeted) this.onOpen(s);
    try {
      if (typeof data === 'string') throw new wire.ProtocolError('text message on the binary protocol channel');
      if (data.length > wire.MAX_MESSAGE) {
        throw new wire.ProtocolError(`message of ${data.length} bytes exceeds 256 KiB`);
      }
      this.handle(s, s.proto.receive(data));
    } catch (e) {
      if (e instanceof wire.ProtocolError) {
        this.drop(s, `protocol error: ${e.message}`, { ban: true });
      } else {
        console.error(e);
        this.emit('warning', { message: `internal error with peer ${s.id} (a bug): ${e.message}` });
        this.drop(s, 'internal error', { warn: true });
      }
    }
  }

  handle(s, ev) {
    switch (ev.type) {
      case 'piece':
        this.onBlock(s, ev);
        break;
      case 'request':
        if (!this.manifest || !this.picker.have[ev.piece]) {
          s.send(wire.encodeReject(ev.piece, ev.offset, ev.length));
          return;
        }
        if (s.serveQueue.length >= MAX_QUEUED_REQUESTS) throw new wire.ProtocolError('request flood');
        s.serveQueue.push([ev.piece, ev.offset, ev.length]);
        this.pumpServe(s);
        break;
      case 'cancel': {
        const i = s.serveQueue.findIndex(([p, o, n]) => p === ev.piece && o === ev.offset && n === ev.length);
        if (i >= 0) s.serveQueue.splice(i, 1);
        break;
      }
      case 'reject':
        if (this.picker) {
          this.picker.onReject(s.id, [ev.piece, ev.offset, ev.length]);
          // It said it had the piece, then refused: stop asking it for that one.
          s.refused.add(ev.piece);
          if (s.refused.size > MAX_REFUSALS) {
            throw new wire.ProtocolError('refuses pieces it claims to have (lying bitfield)');
          }
          this.refill(s);
        }
        break;
      case 'have':
        if (!s.pieces.has(ev.piece) && !s.hasAll) {
          s.pieces.add(ev.piece);
          if (this.picker && s.announced) {
            this.picker.peerHas(ev.piece);
            this.refill(s);
          }
        }
        break;
      case 'bitfield':
      case 'have-all':
        if (ev.type === 'have-all') s.hasAll = true;
        else s.pendingBitfield = ev.bits.slice();
        if (!this.manifest) {
          if (s.manifestUnavailable || !s.manifestBuf.length) this.requestManifest(s);
        } else {
          this.attachToPicker(s);
        }
        break;
      case 'handshake': {
        const id = toHex(ev.peerId);
        if (id === toHex(this.peerId) || this.bannedIds.has(id)) {
          throw new wire.ProtocolError('connected to ourselves or to a dropped peer');
        }
        this.busyPeers.delete(s.id); // it had room after all
        this.lostPeers.delete(s.id); // reconnected (the count stays, for its next loss)
        this.emit('peer-joined', { id: s.id, connection: s.connection });
        if (this.manifest) {
          s.proto.setGeometry(this.geometry());
          this.sendAvailability(s);
        } else {
          this.requestManifest(s);
        }
        break;
      }
      case 'manifest-request':
        // Answered like a block: behind the link's back-pressure, one at a time, within
        // the request budget `s.proto` holds the peer to (it threw if over).
        this.pumpServe(s);
        break;
      case 'manifest-data':
        this.onManifestData(s, ev);
        break;
      case 'close':
        s.dropped = s.dropped || `peer closed: ${ev.reason}`;
        this.forgetRedials(s.id); // it hung up on purpose
        if (ev.reason.startsWith(BUSY)) this.refusedBusy(s, ev.reason);
        this.drop(s, null);
        break;
      default:
        break;
    }
  }

  // -- manifest -------------------------------------------------------------------------------

  requestManifest(s) {
    if (this.manifest || s.proto.manifestWanted) return;
    s.manifestUnavailable = false;
    s.send(s.proto.sendManifestRequest(s.manifestLength, wire.MANIFEST_CHUNK));
  }

  onManifestData(s, ev) {
    if (this.manifest) {
      // An answer to a request sent before we had the manifest: it must still agree.
      const enc = this.manifest.encoded;
      const part = enc.subarray(ev.offset, ev.offset + ev.data.length);
      if (ev.total && (ev.total !== enc.length || toHex(part) !== toHex(ev.data))) {
        throw new wire.ProtocolError('sent a bad manifest: it differs from the verified one');
      }
      return;
    }
    if (ev.total === 0) {
      s.manifestUnavailable = true; // it has none yet; its bitfield will say when it does
      s.manifestBuf = [];
      s.manifestLength = 0;
      return;
    }
    if (ev.total > MAX_MANIFEST) throw new wire.ProtocolError(`manifest of ${ev.total} bytes is too large`);
    s.manifestBuf.push(ev.data.slice());
    s.manifestLength += ev.data.length;
    if (s.manifestLength < ev.total) {
      this.requestManifest(s);
      return;
    }
    const bytes = new Uint8Array(s.manifestLength);
    let off = 0;
    for (const chunk of s.manifestBuf) {
      bytes.set(chunk, off);
      off += chunk.length;
    }
    s.manifestBuf = [];
    decodeVerified(bytes, this.contentHash).then(
      (m) => this.setManifest(m, s.id),
      (e) => {
        this.emit('warning', { message: `peer ${s.id} sent a bad manifest: ${e.message}` });
        this.drop(s, `sent a bad manifest: ${e.message}`, { ban: true });
      },
    );
  }

  setManifest(m, from) {
    if (this.manifest) return;
    this.manifest = m;
    const lengths = Array.from({ length: m.pieceCount }, (_, i) => m.pieceLength(i));
    this.picker = new Picker(lengths, Math.min(m.pieceSize, MAX_BLOCK));
    this.store = PieceStore.open(m, this.contentId, {
      ...this.storeOptions,
      onFailover: (ev) => this.onStorageFailover(ev),
    });
    this.store.ready.then(() => this.emit('storage', this.store.stats()));
    this.emit('manifest', { manifest: m, from });
    for (const s of this.sessions.values()) {
      s.proto.setLocalManifestSize(m.encoded.length);
      if (s.proto.remote) {
        s.proto.setGeometry(this.geometry());
        this.sendAvailability(s);
        if (s.proto.remoteBitfieldSeen) this.attachToPicker(s);
      }
    }
    this.refillAll();
  }

  geometry() {
    const m = this.manifest;
    return new wire.Geometry(m.pieceCount, m.pieceSize, m.size);
  }

  sendAvailability(s) {
    if (this.picker.complete) s.send(wire.encodeHaveAll());
    else s.send(wire.encodeBitfield(wire.bitfieldFrom(this.picker.have, this.picker.count)));
  }

  attachToPicker(s) {
    if (!this.picker || s.announced) return;
    const count = this.picker.count;
    // HAVEs that came before the manifest were not range-checked yet.
    s.pieces = new Set([...s.pieces].filter((p) => p < count));
    if (s.pendingBitfield && !s.hasAll) {
      try {
        for (const p of wire.bitfieldPieces(s.pendingBitfield, count)) s.pieces.add(p);
      } catch (e) {
        this.drop(s, `protocol error: ${e.message}`, { ban: true });
        return;
      }
      s.pendingBitfield = null;
    }
    s.announced = true;
    this.picker.addPeer(s.id, s.hasAll ? null : [...s.pieces]);
    this.refill(s);
  }

  /** Put these pieces first; `strict`: request nothing else and cancel what is in flight. */
  setPriority(pieces, strict = false) {
    const p = this.picker;
    if (!p) return;
    p.setPriority(pieces, strict);
    const urgent = new Set(p.urgent());
    if (strict && urgent.size) {
      for (const s of this.sessions.values()) {
        for (const block of p.inFlightBlocks(s.id)) {
          if (!urgent.has(block[0])) {
            s.send(s.proto.sendCancel(...block));
            p.onReject(s.id, block);
          }
        }
      }
    }
    this.refillAll();
  }

  setCursor(piece) {
    if (this.picker) this.picker.setCursor(piece);
  }

  // -- downloading ----------------------------------------------------------------------------

  refillAll() {
    for (const s of this.sessions.values()) this.refill(s);
  }

  /** Whether to ask for more: not while storage lags `maxBacklog` behind, or failed. */
  get mayRequest() {
    return this.halted === null && this.backlog < this.maxBacklog;
  }

  refill(s) {
    const p = this.picker;
    if (!p || p.complete || !s.announced || !s.ready || !this.mayRequest) return;
    const free = s.slots - p.inFlight(s.id);
    if (free <= 0) return;
    const has = s.hasAll && !s.refused.size ? null : (piece) => s.has(piece);
    for (const [piece, offset, length] of p.pick(s.id, has, free, performance.now())) {
      s.send(s.proto.sendRequest(piece, offset, length));
    }
  }

  onBlock(s, ev) {
    const p = this.picker;
    const n = ev.data.length;
    s.bytesDown += n;
    s.rate.add(n);
    this.bytesDown += n;
    this.downRate.add(n);
    this.receivedFrom[s.id] = (this.receivedFrom[s.id] || 0) + n;
    s.lastData = performance.now();
    if (!p || !this.manifest) return;
    const block = [ev.piece, ev.offset, n];
    const fresh = p.blockNeeded(ev.piece, ev.offset); // not a late or end-game duplicate
    const { complete, dups } = p.onBlock(s.id, block);
    for (const [other, dblock] of dups) {
      const o = this.sessions.get(other);
      if (o) o.send(o.proto.sendCancel(...dblock));
    }
    if (fresh) {
      let buf = this.buffers.get(ev.piece);
      if (!buf) {
        buf = new Uint8Array(this.manifest.pieceLength(ev.piece));
        this.buffers.set(ev.piece, buf);
      }
      buf.set(ev.data, ev.offset);
      if (!this.contributors.has(ev.piece)) this.contributors.set(ev.piece, new Set());
      this.contributors.get(ev.piece).add(s.id);
    }
    if (complete) {
      const data = this.buffers.get(ev.piece);
      const peers = this.contributors.get(ev.piece) || new Set();
      this.buffers.delete(ev.piece);
      this.contributors.delete(ev.piece);
      this.verifying.add(ev.piece);
      this.backlog += data.length;
      this.verify(ev.piece, data, peers).catch((e) => {
        console.error(e);
        p.onPieceFailed(ev.piece); // fetch it again rather than leave it stuck
        this.emit('warning', { message: `could not check piece ${ev.piece} (a bug): ${e.message}` });
      }).finally(() => {
        this.backlog -= data.length;
        this.refillAll(); // below the bound again, maybe
      });
    }
    this.refill(s);
  }

  /** The store gave up its disk for memory: fetch again what was only on the disk. */
  onStorageFailover({ reason, lost }) {
    for (const piece of lost) this.picker.forget(piece);
    const again = lost.length ? `; fetching the ${lost.length} pieces that were only on disk again` : '';
    this.emit('warning', { message: `${reason}: the file is kept in memory from now on${again}` });
    this.refillAll();
  }

  async verify(piece, data, peers) {
    const m = this.manifest;
    const p = this.picker;
    let ok = false;
    try {
      ok = await m.pieceOk(piece, data);
    } finally {
      this.verifying.delete(piece);
    }
    if (!ok) {
      p.onPieceFailed(piece);
      this.rejectedPieces.push({ piece, peers: [...peers] });
      this.emit('piece-rejected', { piece, peers: [...peers] });
      for (const id of peers) {
        const s = this.sessions.get(id);
        if (!s) continue;
        s.strikes += peers.size === 1 ? BAD_PIECE_STRIKES : 1;
        if (s.strikes >= BAD_PIECE_STRIKES) {
          this.drop(s, `sent corrupt data for piece ${piece}`, { ban: true });
        }
      }
      this.refillAll();
      return;
    }
    if (p.have[piece]) return;
    // Held (and announced) once stored: a peer asking for it then finds it on disk.
    try {
      await this.store.put(piece, data);
    } catch (e) {
      // Not even memory takes it (the store fell back already): fetching it again would
      // fail again, forever. Stop, and say so once.
      p.onPieceFailed(piece);
      if (!this.halted) {
        this.halted = `could not store piece ${piece}: ${e.message}`;
        this.emit('error', { message: `${this.halted}; the download stopped` });
      }
      return;
    }
    if (p.have[piece]) return;
    p.onPieceVerified(piece);
    this.pieceSources.set(piece, [...peers]);
    for (const s of this.sessions.values()) {
      if (s.ready && s.proto.geometry && !s.hasAll) s.send(wire.encodeHave(piece));
    }
    this.emit('piece', { piece, peers: [...peers], complete: p.complete });
    this.refillAll();
  }

  // -- serving --------------------------------------------------------------------------------

  /**
   * Send the pending manifest answer, then queued blocks, until the channel holds
   * HIGH_WATER; bufferedamountlow resumes.
   */
  pumpServe(s) {
    if (s.proto.manifestAsked && s.link && s.link.open && s.link.buffered < HIGH_WATER) {
      if (!s.link.send(s.proto.manifestAnswer(this.manifest ? this.manifest.encoded : null))) return;
      // Until now a second request would have been a protocol error: a peer cannot make
      // us queue more than one answer.
      s.proto.manifestAnswered();
    }
    while (s.serveQueue.length && s.link && s.link.open && s.link.buffered < HIGH_WATER) {
      const [piece, offset, length] = s.serveQueue[0];
      if (!this.has(piece)) {
        s.serveQueue.shift();
        s.send(wire.encodeReject(piece, offset, length));
        continue;
      }
      // Not in memory: read it from disk, then go on. One read per peer at a time, and the
      // piece read is kept here so a small LRU cannot evict it before it is sent.
      if (s.loaded && s.loaded.piece !== piece) s.loaded = null; // done with it
      const data = this.store.cached(piece) || (s.loaded ? s.loaded.data : null);
      if (!data) {
        if (!s.loading) this.loadForServing(s, piece);
        return;
      }
      s.serveQueue.shift();
      if (!s.serveQueue.length) s.loaded = null;
      if (!s.link.send(wire.encodePiece(piece, offset, data.subarray(offset, offset + length)))) return;
      s.bytesUp += length;
      s.upRate.add(length);
      this.bytesUp += length;
      this.upRate.add(length);
      this.sentTo[s.id] = (this.sentTo[s.id] || 0) + length;
    }
  }

  loadForServing(s, piece) {
    s.loading = true;
    // Refuse the request at the head if the read brings nothing: retrying it would fail
    // the same way, in a loop.
    const refuse = () => {
      const head = s.serveQueue[0];
      if (head && head[0] === piece) {
        s.serveQueue.shift();
        s.send(wire.encodeReject(...head));
      }
    };
    this.store.get(piece).then(
      (data) => {
        if (data) s.loaded = { piece, data };
        else refuse(); // no longer held (the disk failed): pumpServe refuses the rest
      },
      (e) => {
        this.emit('warning', { message: `could not read piece ${piece} from storage: ${e.message}` });
        refuse();
      },
    ).finally(() => {
      s.loading = false;
      if (this.sessions.get(s.id) === s) this.pumpServe(s);
    });
  }

  // -- housekeeping ---------------------------------------------------------------------------

  tick() {
    const now = performance.now();
    this.downRate.update(now);
    this.upRate.update(now);
    const p = this.picker;
    for (const s of this.sessions.values()) {
      const r = s.rate.update(now);
      s.upRate.update(now);
      if (p) {
        // Keep about one second of data in flight per peer.
        s.slots = Math.max(MIN_SLOTS, Math.min(MAX_SLOTS, Math.floor(r / p.blockSize) + 2));
      }
    }
    this.retryBusy(now);
    this.redialLost(now);
    if (p && !p.complete) {
      const timedOut = new Set();
      for (const [id, block] of p.expired(now)) {
        const s = this.sessions.get(id);
        if (s) {
          s.send(s.proto.sendCancel(...block));
          s.slots = MIN_SLOTS;
          timedOut.add(id);
        }
      }
      for (const id of timedOut) {
        const s = this.sessions.get(id);
        // A request timed out and the peer sent nothing for a whole timeout: it is not
        // slow, it is not answering.
        if (s && now - s.lastData >= p.requestTimeout) this.drop(s, 'stopped answering requests', { warn: true });
      }
      this.refillAll();
    }
    this.emit('stats', this.stats());
  }

  stats() {
    const peers = [...this.sessions.values()].map((s) => ({
      id: s.id,
      state: s.ready ? 'connected' : s.link && s.link.open ? 'handshaking' : 'connecting',
      offerer: s.offerer,
      connection: s.connection,
      hasAll: s.hasAll,
      pieces: s.hasAll ? (this.manifest ? this.manifest.pieceCount : null) : s.pieces.size,
      received: s.bytesDown,
      sent: s.bytesUp,
      downRate: Math.round(s.rate.value),
      upRate: Math.round(s.upRate.value),
      inFlight: this.picker ? this.picker.inFlight(s.id) : 0,
    }));
    return {
      peers,
      downRate: Math.round(this.downRate.value),
      upRate: Math.round(this.upRate.value),
      received: this.bytesDown,
      sent: this.bytesUp,
      have: this.picker ? this.picker.nHave : 0,
      busy: [...this.busyPeers.keys()],
      redialing: [...this.lostPeers.keys()],
      pieceCount: this.manifest ? this.manifest.pieceCount : null,
      store: this.store ? this.store.stats() : null,
    };
  }

  /** The verified bytes [start, end) as one array (read from storage), or null if a piece is missing. */
  async read(start, end) {
    return this.store ? this.store.read(start, end) : null;
  }

  /** How many verified bytes run from `start` without a gap. */
  contiguousFrom(start) {
    return this.store ? this.store.contiguousFrom(start) : 0;
  }

  has(piece) {
    return Boolean(this.store && this.store.has(piece));
  }
}
