// The piece picker and request scheduler (sans-IO): which block to ask which peer for.
//
// A port of p2pcli/picker.py with the player's policy: `priority` holds the pieces the
// player needs (under the playhead first, then its read-ahead window), requested before
// anything else; while `strict` is set (just after a seek) nothing else is requested at
// all. Past the priority pieces the page keeps downloading the whole file, rarest first
// with ties broken by distance ahead of the playhead, so a tab ends up holding everything
// and can serve it. Partially received pieces are finished before new ones are started;
// requests older than the timeout go to other peers; end-game duplicates the last blocks.
// Blocks are [piece, offset, length]; time `now` is in milliseconds.

const KEY = 4096; // > blocks per piece (16 MiB / 16 KiB = 1024)

class ActivePiece {
  constructor(length, blockSize) {
    this.length = length;
    const n = Math.max(1, Math.ceil(length / blockSize));
    this.inFlight = Array.from({ length: n }, () => new Set());
    this.received = new Uint8Array(n);
    this.nReceived = 0;
  }

  get nBlocks() {
    return this.received.length;
  }
}

export class Picker {
  constructor(pieceLengths, blockSize, { requestTimeout = 8000, endgameCopies = 2 } = {}) {
    this.pieceLengths = pieceLengths;
    this.count = pieceLengths.length;
    this.blockSize = blockSize;
    this.requestTimeout = requestTimeout;
    this.endgameCopies = endgameCopies;
    this.have = new Uint8Array(this.count);
    this.nHave = 0;
    this.availability = new Int32Array(this.count);
    this.allPeers = new Set(); // peers with every piece (not counted in availability)
    this.active = new Map(); // piece -> ActivePiece
    this.peerBlocks = new Map(); // peer -> Map(piece * KEY + block -> time requested)
    this.cursor = 0; // the playhead's piece: ties in rarity go to the nearest piece after it
    this.priority = [];
    this.strict = false;
    this.order = null;
  }

  get complete() {
    return this.nHave === this.count;
  }

  markHave(piece) {
    if (!this.have[piece]) {
      this.have[piece] = 1;
      this.nHave++;
    }
    this.active.delete(piece);
  }

  /** A held piece is gone (its storage failed): it is wanted again, like any missing one. */
  forget(piece) {
    if (this.have[piece]) {
      this.have[piece] = 0;
      this.nHave--;
    }
  }

  addPeer(peer, pieces) {
    if (!this.peerBlocks.has(peer)) this.peerBlocks.set(peer, new Map());
    if (pieces === null) {
      this.allPeers.add(peer);
    } else {
      for (const p of pieces) this.availability[p]++;
      this.order = null;
    }
  }

  peerHas(piece) {
    this.availability[piece]++;
    this.order = null;
  }

  /** Forget a peer; returns the blocks it had in flight (now free for others). */
  removePeer(peer, pieces) {
    if (this.allPeers.has(peer)) {
      this.allPeers.delete(peer);
    } else if (pieces !== null) {
      for (const p of pieces) this.availability[p]--;
      this.order = null;
    }
    const freed = [];
    for (const key of (this.peerBlocks.get(peer) || new Map()).keys()) {
      const piece = Math.floor(key / KEY);
      const b = key % KEY;
      const st = this.active.get(piece);
      if (st) {
        st.inFlight[b].delete(peer);
        freed.push(this.block(piece, b));
      }
    }
    this.peerBlocks.delete(peer);
    return freed;
  }

  setCursor(piece) {
    if (piece !== this.cursor) {
      this.cursor = piece;
      this.order = null;
    }
  }

  /** Pieces to request before anything else, most urgent first. */
  setPriority(pieces, strict = false) {
    this.priority = pieces;
    this.strict = strict;
  }

  urgent() {
    return this.priority.filter((p) => !this.have[p]);
  }

  inFlight(peer) {
    const m = this.peerBlocks.get(peer);
    return m ? m.size : 0;
  }

  inFlightBlocks(peer) {
    const m = this.peerBlocks.get(peer);
    if (!m) return [];
    return [...m.keys()].map((key) => this.block(Math.floor(key / KEY), key % KEY));
  }

  /** Up to `slots` new blocks to request from `peer` (`has` null: it has every piece). */
  pick(peer, has, slots, now) {
    if (slots <= 0 || this.complete) return [];
    if (!this.peerBlocks.has(peer)) this.peerBlocks.set(peer, new Map());
    const mine = this.peerBlocks.get(peer);
    const out = [];
    const take = (piece, endgame) => {
      let st = this.active.get(piece);
      if (!st) {
        st = new ActivePiece(this.pieceLengths[piece], this.blockSize);
        this.active.set(piece, st);
      }
      for (let b = 0; b < st.nBlocks; b++) {
        const key = piece * KEY + b;
        if (st.received[b] || mine.has(key)) continue;
        const flying = st.inFlight[b];
        if (flying.size && (!endgame || flying.size >= this.endgameCopies)) continue;
        flying.add(peer);
        mine.set(key, now);
        out.push(this.block(piece, b));
        if (out.length >= slots) return true;
      }
      return false;
    };
    const urgent = this.urgent();
    // A player waiting after a seek: spend no bandwidth elsewhere until its pieces are in.
    const order = urgent.length && this.strict
      ? urgent
      : [...urgent, ...this.active.keys(), ...this.candidates()];
    const seen = new Set();
    for (const endgame of [false, true]) {
      seen.clear();
      for (const piece of order) {
        if (seen.has(piece)) continue;
        seen.add(piece);
        if (this.have[piece] || (has !== null && !has(piece))) continue;
        if (take(piece, endgame)) return out;
      }
      if (out.length) break; // normal picks found: no duplicates yet
    }
    return out;
  }

  candidates() {
    if (this.order === null) {
      const n = this.count;
      const c = this.cursor;
      const keys = new Float64Array(n);
      for (let p = 0; p < n; p++) keys[p] = this.availability[p] * n + ((p - c + n) % n);
      this.order = Array.from({ length: n }, (_, p) => p).sort((a, b) => keys[a] - keys[b]);
    }
    return this.order.filter((p) => !this.have[p] && !this.active.has(p));
  }

  block(piece, b) {
    const off = b * this.blockSize;
    return [piece, off, Math.min(this.blockSize, this.pieceLengths[piece] - off)];
  }

  /** A block arrived. Returns {complete: piece fully received, dups: [[peer, block]] to cancel}. */
  onBlock(peer, [piece, offset]) {
    const b = Math.floor(offset / this.blockSize);
    const mine = this.peerBlocks.get(peer);
    if (mine) mine.delete(piece * KEY + b);
    const st = this.active.get(piece);
    if (!st || st.received[b]) return { complete: false, dups: [] };
    st.received[b] = 1;
    st.nReceived++;
    const dups = [];
    for (const other of st.inFlight[b]) {
      if (other !== peer) {
        const theirs = this.peerBlocks.get(other);
        if (theirs) theirs.delete(piece * KEY + b);
        dups.push([other, this.block(piece, b)]);
      }
    }
    st.inFlight[b].clear();
    return { complete: st.nReceived === st.nBlocks, dups };
  }

  /** Whether a block arriving now is new data (not a duplicate or a late copy). */
  blockNeeded(piece, offset) {
    const st = this.active.get(piece);
    return st !== undefined && !st.received[Math.floor(offset / this.blockSize)];
  }

  onReject(peer, [piece, offset]) {
    const b = Math.floor(offset / this.blockSize);
    const mine = this.peerBlocks.get(peer);
    if (mine) mine.delete(piece * KEY + b);
    const st = this.active.get(piece);
    if (st) st.inFlight[b].delete(peer);
  }

  onPieceVerified(piece) {
    this.markHave(piece);
  }

  /** The assembled piece did not match its hash: fetch all of it again. */
  onPieceFailed(piece) {
    const st = this.active.get(piece);
    if (!st) return;
    this.active.delete(piece);
    st.inFlight.forEach((flying, b) => {
      for (const p of flying) {
        const m = this.peerBlocks.get(p);
        if (m) m.delete(piece * KEY + b);
      }
    });
  }

  /** Requests older than the timeout, freed for other peers: [[peer, block]]. */
  expired(now) {
    const out = [];
    const limit = now - this.requestTimeout;
    for (const [peer, blocks] of this.peerBlocks) {
      for (const [key, t] of blocks) {
        if (t >= limit) continue;
        blocks.delete(key);
        const piece = Math.floor(key / KEY);
        const b = key % KEY;
        const st = this.active.get(piece);
        if (st) st.inFlight[b].delete(peer);
        out.push([peer, this.block(piece, b)]);
      }
    }
    return out;
  }
}
