// The peer wire protocol (sans-IO): message codec and the per-peer state machine.
//
// A port of p2pcli/wire.py; docs/PROTOCOL.md section 3 is the normative description.
// Every message is one binary data-channel message: a type byte, fixed big-endian fields,
// then (for data messages) a payload. `PeerProtocol.receive()` takes the bytes of one
// message and returns an event object, or throws `ProtocolError` with a reason fit for
// the user to read; it holds the remote to what we asked for (no unrequested data).

export const PROTOCOL_VERSION = 1;
export const CHANNEL_LABEL = 'p2p';
export const CHANNEL_PROTOCOL = 'p2p/1';
export const MIN_MAX_BLOCK = 16 * 1024;
export const MAX_BLOCK_LIMIT = 256 * 1024 - 64;
export const MAX_MESSAGE = 256 * 1024; // the max-message-size Chromium and aiortc advertise
export const MAX_REASON = 512;
export const MANIFEST_CHUNK = 64 * 1024 - 64;
// MANIFEST_REQUESTs a peer may send beyond two full reads of the manifest: the one answered
// "not yet" (total 0) before we had a manifest, and a little slack. More is a peer making
// us send the manifest again and again (each 9-byte request draws up to 64 KiB).
export const MANIFEST_REQUEST_SLACK = 4;

/**
 * How many MANIFEST_REQUESTs one peer may send us while our manifest is `size` bytes
 * (null: we have none yet): enough to read it twice, chunk by chunk, plus the slack.
 * The same budget as p2pcli/wire.py's manifest_request_limit (a test compares them).
 */
export function manifestRequestLimit(size) {
  const chunks = size ? Math.ceil(size / MANIFEST_CHUNK) : 0;
  return 2 * chunks + MANIFEST_REQUEST_SLACK;
}

export const MsgType = Object.freeze({
  HANDSHAKE: 0x01,
  CLOSE: 0x02,
  MANIFEST_REQUEST: 0x03,
  MANIFEST_DATA: 0x04,
  BITFIELD: 0x05,
  HAVE_ALL: 0x06,
  HAVE: 0x07,
  REQUEST: 0x08,
  PIECE: 0x09,
  CANCEL: 0x0a,
  REJECT: 0x0b,
});

const MAGIC = [0x50, 0x32, 0x50, 0x57]; // "P2PW"
const HANDSHAKE_SIZE = 1 + 4 + 1 + 32 + 16 + 4;

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// -- encoders (pure) ------------------------------------------------------------------------

function header(type, fields, payloadLength = 0) {
  const out = new Uint8Array(1 + 4 * fields.length + payloadLength);
  out[0] = type;
  const view = new DataView(out.buffer);
  fields.forEach((v, i) => view.setUint32(1 + 4 * i, v));
  return out;
}

export function encodeHandshake(contentHash, peerId, maxBlock) {
  const out = new Uint8Array(HANDSHAKE_SIZE);
  out[0] = MsgType.HANDSHAKE;
  out.set(MAGIC, 1);
  out[5] = PROTOCOL_VERSION;
  out.set(contentHash, 6);
  out.set(peerId, 38);
  new DataView(out.buffer).setUint32(54, maxBlock);
  return out;
}

export function encodeClose(reason) {
  let raw = new TextEncoder().encode(String(reason));
  if (raw.length > MAX_REASON) {
    // Cut at a character boundary: the reason must stay valid UTF-8.
    let end = MAX_REASON;
    while (end > 0 && (raw[end] & 0xc0) === 0x80) end--;
    raw = raw.subarray(0, end);
  }
  const out = new Uint8Array(1 + raw.length);
  out[0] = MsgType.CLOSE;
  out.set(raw, 1);
  return out;
}

export const encodeManifestRequest = (offset, length) =>
  header(MsgType.MANIFEST_REQUEST, [offset, length]);

export function encodeManifestData(total, offset, data) {
  const out = header(MsgType.MANIFEST_DATA, [total, offset], data.length);
  out.set(data, 9);
  return out;
}

export function encodeBitfield(bits) {
  const out = new Uint8Array(1 + bits.length);
  out[0] = MsgType.BITFIELD;
  out.set(bits, 1);
  return out;
}

export const encodeHaveAll = () => Uint8Array.of(MsgType.HAVE_ALL);
export const encodeHave = (piece) => header(MsgType.HAVE, [piece]);
export const encodeRequest = (p, o, n) => header(MsgType.REQUEST, [p, o, n]);
export const encodeCancel = (p, o, n) => header(MsgType.CANCEL, [p, o, n]);
export const encodeReject = (p, o, n) => header(MsgType.REJECT, [p, o, n]);

export function encodePiece(piece, offset, data) {
  const out = header(MsgType.PIECE, [piece, offset], data.length);
  out.set(data, 9);
  return out;
}

// -- decoder (pure) -------------------------------------------------------------------------

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ProtocolError('text message on the binary protocol channel');
}

function exact(u, size) {
  if (u.length !== size) {
    throw new ProtocolError(
      `message of type 0x${u[0].toString(16).padStart(2, '0')} has ${u.length} bytes, not ${size}`);
  }
}

/** Decode one message without context. Throws only ProtocolError. */
export function decode(data) {
  const u = asBytes(data);
  if (u.length === 0) throw new ProtocolError('empty message');
  const t = u[0];
  const view = new DataView(u.buffer, u.byteOffset, u.byteLength);
  const u32 = (i) => {
    if (u.length < 1 + 4 * (i + 1)) {
      throw new ProtocolError(`truncated message of type 0x${t.toString(16).padStart(2, '0')}`);
    }
    return view.getUint32(1 + 4 * i);
  };
  switch (t) {
    case MsgType.HANDSHAKE: {
      if (u.length !== HANDSHAKE_SIZE) {
        throw new ProtocolError(`handshake of ${u.length} bytes, expected ${HANDSHAKE_SIZE}`);
      }
      if (MAGIC.some((b, i) => u[1 + i] !== b)) {
        throw new ProtocolError('not a p2p peer (bad handshake magic)');
      }
      return {
        type: 'handshake',
        version: u[5],
        contentHash: u.slice(6, 38),
        peerId: u.slice(38, 54),
        maxBlock: view.getUint32(54),
      };
    }
    case MsgType.CLOSE:
      return { type: 'close', reason: new TextDecoder().decode(u.subarray(1, 1 + MAX_REASON)) };
    case MsgType.MANIFEST_REQUEST:
      exact(u, 9);
      return { type: 'manifest-request', offset: u32(0), length: u32(1) };
    case MsgType.MANIFEST_DATA:
      return { type: 'manifest-data', total: u32(0), offset: u32(1), data: u.subarray(9) };
    case MsgType.BITFIELD:
      return { type: 'bitfield', bits: u.subarray(1) };
    case MsgType.HAVE_ALL:
      if (u.length !== 1) throw new ProtocolError('HAVE_ALL with a payload');
      return { type: 'have-all' };
    case MsgType.HAVE:
      exact(u, 5);
      return { type: 'have', piece: u32(0) };
    case MsgType.REQUEST:
      exact(u, 13);
      return { type: 'request', piece: u32(0), offset: u32(1), length: u32(2) };
    case MsgType.PIECE:
      return { type: 'piece', piece: u32(0), offset: u32(1), data: u.subarray(9) };
    case MsgType.CANCEL:
      exact(u, 13);
      return { type: 'cancel', piece: u32(0), offset: u32(1), length: u32(2) };
    case MsgType.REJECT:
      exact(u, 13);
      return { type: 'reject', piece: u32(0), offset: u32(1), length: u32(2) };
    default:
      throw new ProtocolError(`unknown message type 0x${t.toString(16).padStart(2, '0')}`);
  }
}

// -- bitfields ------------------------------------------------------------------------------

export const bitfieldBytes = (count) => Math.ceil(count / 8);

/** A bitfield from `have`, a Uint8Array/array of 0/1 per piece. */
export function bitfieldFrom(have, count) {
  const out = new Uint8Array(bitfieldBytes(count));
  for (let i = 0; i < count; i++) if (have[i]) out[i >> 3] |= 0x80 >> (i & 7);
  return out;
}

/** Pieces set in a bitfield; the length must be exact and spare bits zero. */
export function bitfieldPieces(bits, count) {
  if (bits.length !== bitfieldBytes(count)) {
    throw new ProtocolError(`bitfield of ${bits.length} bytes for ${count} pieces`);
  }
  if (count % 8 && bits.length && bits[bits.length - 1] & (0xff >> (count % 8))) {
    throw new ProtocolError('bitfield has spare bits set');
  }
  const out = [];
  for (let i = 0; i < count; i++) if (bits[i >> 3] & (0x80 >> (i & 7))) out.push(i);
  return out;
}

// -- state machine --------------------------------------------------------------------------

const blockKey = (p, o, n) => `${p}:${o}:${n}`;
const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** What the protocol needs to know of the content to validate messages. */
export class Geometry {
  constructor(pieceCount, pieceSize, size) {
    this.pieceCount = pieceCount;
    this.pieceSize = pieceSize;
    this.size = size;
  }

  pieceLength(piece) {
    return Math.min(this.pieceSize, this.size - piece * this.pieceSize);
  }
}

/**
 * One conversation with one remote peer about one content hash.
 *
 * `receive()` each incoming message; it returns an event and throws ProtocolError when the
 * peer misbehaves. The send* methods build outgoing messages and record what we asked
 * for, which receive() then holds the peer to.
 */
export class PeerProtocol {
  constructor(contentHash, peerId, maxBlock) {
    this.contentHash = contentHash;
    this.peerId = peerId;
    this.maxBlock = maxBlock;
    this.remote = null; // the remote's handshake
    this.geometry = null;
    this.manifestSize = null;
    this.outstanding = new Set(); // requests sent, not yet answered
    this.cancelled = new Map(); // key -> count: each cancelled request may still be answered
    this.manifestWanted = null;
    // Serving the manifest: the remote's request not yet answered (one at a time, as
    // PROTOCOL.md 3.3 says), how many it sent, and our manifest's size once we have one.
    this.manifestAsked = null;
    this.manifestRequests = 0;
    this.localManifestSize = null;
    this.remoteBitfieldSeen = false;
    this.closed = false;
  }

  handshake() {
    return encodeHandshake(this.contentHash, this.peerId, this.maxBlock);
  }

  sendManifestRequest(offset, length) {
    this.manifestWanted = [offset, length];
    return encodeManifestRequest(offset, length);
  }

  /**
   * The answer to the remote's pending MANIFEST_REQUEST, from `manifest` (null: we have
   * none yet, total 0). Call `manifestAnswered()` once it is sent.
   */
  manifestAnswer(manifest) {
    if (!this.manifestAsked) throw new Error('no manifest request to answer');
    const [offset, length] = this.manifestAsked;
    if (!manifest) return encodeManifestData(0, offset, new Uint8Array(0));
    return encodeManifestData(manifest.length, offset, manifest.subarray(offset, offset + length));
  }

  /** The answer is sent: the remote may ask for the next chunk. */
  manifestAnswered() {
    this.manifestAsked = null;
  }

  /** We now have a manifest of `size` bytes: it sets how often the remote may ask. */
  setLocalManifestSize(size) {
    this.localManifestSize = size;
  }

  sendRequest(piece, offset, length) {
    if (length > this.maxBlock) throw new Error('block longer than we advertised');
    this.outstanding.add(blockKey(piece, offset, length));
    return encodeRequest(piece, offset, length);
  }

  /** The CANCEL message, or null when that block is not outstanding. */
  sendCancel(piece, offset, length) {
    const key = blockKey(piece, offset, length);
    if (!this.outstanding.delete(key)) return null;
    this.cancelled.set(key, (this.cancelled.get(key) || 0) + 1);
    return encodeCancel(piece, offset, length);
  }

  /** The largest block the remote accepts from us. */
  pieceMessageLimit() {
    return this.remote ? this.remote.maxBlock : MIN_MAX_BLOCK;
  }

  setGeometry(geometry) {
    this.geometry = geometry;
  }

  receive(data) {
    if (this.closed) throw new ProtocolError('message after close');
    const ev = decode(data);
    if (this.remote === null) {
      if (ev.type === 'close') {
        this.closed = true;
        return ev;
      }
      if (ev.type !== 'handshake') throw new ProtocolError('first message was not a handshake');
      if (ev.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(`peer speaks protocol version ${ev.version}, we speak 1`);
      }
      if (!sameBytes(ev.contentHash, this.contentHash)) {
        throw new ProtocolError('peer is sharing different content (content hash mismatch)');
      }
      if (ev.maxBlock < MIN_MAX_BLOCK || ev.maxBlock > MAX_BLOCK_LIMIT) {
        throw new ProtocolError(`peer advertised block size ${ev.maxBlock} out of range`);
      }
      this.remote = ev;
      return ev;
    }
    switch (ev.type) {
      case 'handshake':
        throw new ProtocolError('second handshake');
      case 'close':
        this.closed = true;
        break;
      case 'manifest-request':
        this.checkManifestRequest(ev);
        break;
      case 'manifest-data':
        this.checkManifestData(ev);
        break;
      case 'bitfield':
      case 'have-all':
        if (this.remoteBitfieldSeen) throw new ProtocolError('second bitfield');
        this.remoteBitfieldSeen = true;
        if (ev.type === 'bitfield' && this.geometry) bitfieldPieces(ev.bits, this.geometry.pieceCount);
        break;
      case 'have':
        if (this.geometry && ev.piece >= this.geometry.pieceCount) {
          throw new ProtocolError(`HAVE for piece ${ev.piece} beyond the last piece`);
        }
        break;
      case 'request':
      case 'cancel':
        this.checkBlock(ev.piece, ev.offset, ev.length, this.pieceMessageLimit());
        break;
      case 'piece':
        if (!this.answered(blockKey(ev.piece, ev.offset, ev.data.length))) {
          throw new ProtocolError(
            `unrequested data for piece ${ev.piece} offset ${ev.offset} (${ev.data.length} bytes)`);
        }
        break;
      case 'reject':
        if (!this.answered(blockKey(ev.piece, ev.offset, ev.length))) {
          throw new ProtocolError('reject for a block we did not request');
        }
        break;
      default:
        break;
    }
    return ev;
  }

  /** Consume one request for the block (a PIECE or REJECT answers exactly one). */
  answered(key) {
    if (this.outstanding.delete(key)) return true;
    const n = this.cancelled.get(key);
    if (!n) return false;
    if (n === 1) this.cancelled.delete(key);
    else this.cancelled.set(key, n - 1);
    return true;
  }

  checkBlock(piece, offset, length, limit) {
    const g = this.geometry;
    if (!g) throw new ProtocolError('block message before the content is known');
    if (piece >= g.pieceCount) throw new ProtocolError(`block of piece ${piece}, beyond the last piece`);
    if (length === 0 || length > limit) throw new ProtocolError(`block of ${length} bytes (limit ${limit})`);
    if (offset + length > g.pieceLength(piece)) {
      throw new ProtocolError(`block ${offset}+${length} runs past the end of piece ${piece}`);
    }
  }

  checkManifestRequest(ev) {
    if (ev.length === 0 || ev.length > MANIFEST_CHUNK) {
      throw new ProtocolError(`manifest request of ${ev.length} bytes`);
    }
    if (this.manifestAsked) {
      // A requester waits for each answer; a second request is a flood of them.
      throw new ProtocolError('manifest request before the previous one was answered');
    }
    this.manifestRequests++;
    const limit = manifestRequestLimit(this.localManifestSize);
    if (this.manifestRequests > limit) {
      throw new ProtocolError(
        `asked for the manifest again and again (request ${this.manifestRequests}, limit ${limit})`);
    }
    this.manifestAsked = [ev.offset, ev.length];
  }

  checkManifestData(ev) {
    if (!this.manifestWanted) throw new ProtocolError('manifest data nobody asked for');
    const [offset, length] = this.manifestWanted;
    if (this.manifestSize !== null && ev.total !== this.manifestSize) {
      throw new ProtocolError('manifest size changed between chunks');
    }
    if (ev.offset !== offset || ev.data.length !== Math.min(length, Math.max(ev.total - offset, 0))) {
      throw new ProtocolError('manifest data does not match the request');
    }
    // total = 0 is "I don't have it yet", not a size: the peer may answer for real later.
    this.manifestSize = ev.total || null;
    this.manifestWanted = null;
  }
}
