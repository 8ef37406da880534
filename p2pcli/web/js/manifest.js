// The manifest (docs/PROTOCOL.md section 1.2): decode it, check it names the content hash,
// and verify pieces against it. A port of p2pcli/manifest.py's decoding side.

import { equalBytes, sha256, toHex } from './sha256.js';

export const HASH_LEN = 32;
const MAGIC = [0x50, 0x32, 0x50, 0x4d]; // "P2PM"
const MAX_NAME_BYTES = 255;
const MAX_SIZE = 2 ** 50;

export class ManifestError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ManifestError';
  }
}

export class Manifest {
  constructor(name, size, pieceSize, hashes, encoded, files = null) {
    this.name = name;
    this.size = size;
    this.pieceSize = pieceSize;
    this.pieceCount = hashes.length / HASH_LEN;
    this.hashes = hashes; // 32 bytes per piece, in order
    this.encoded = encoded;
    // Version 2 (a folder share, PROTOCOL 1.2.1): [{path, size, offset}] of its files, in
    // order (the pieces run across them), and its empty folders; null for a single file.
    this.files = files;
    this.folders = [];
  }

  pieceHash(i) {
    return this.hashes.subarray(i * HASH_LEN, (i + 1) * HASH_LEN);
  }

  pieceOffset(i) {
    return i * this.pieceSize;
  }

  /** The piece holding byte `offset`. */
  pieceAt(offset) {
    return Math.floor(offset / this.pieceSize);
  }

  pieceLength(i) {
    return Math.min(this.pieceSize, this.size - i * this.pieceSize);
  }

  /** Indices [first, last] of the pieces covering bytes [start, end), or null. */
  piecesFor(start, end) {
    end = Math.min(end, this.size);
    if (end <= start) return null;
    return [Math.floor(start / this.pieceSize), Math.floor((end - 1) / this.pieceSize)];
  }

  /** Whether `data` is piece `i`: its length and SHA-256 match. */
  async pieceOk(i, data) {
    if (i < 0 || i >= this.pieceCount || data.length !== this.pieceLength(i)) return false;
    return equalBytes(await sha256(data), this.pieceHash(i));
  }
}

// Bidirectional overrides and isolates can make "gpj.exe" display as "exe.jpg".
const BIDI = new Set(['\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e',
  '\u2066', '\u2067', '\u2068', '\u2069']);
// What Windows refuses in a name, refused everywhere: a share must be safe for every receiver.
const WINDOWS_FORBIDDEN = new Set(['<', '>', ':', '"', '|', '?', '*']);
// Windows device names, with any extension and trailing spaces. No `u` flag on purpose: `i`
// then folds ASCII letters only, as Python's re.ASCII | re.IGNORECASE does.
const DEVICE = /^(?:CON|PRN|AUX|NUL|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3]|CONIN\$|CONOUT\$)$/i;

/**
 * Throw ManifestError for a name unsafe to create on any system. The same rule as
 * p2pcli/manifest.py's check_name, tested against the same table (tests/data/names.json).
 */
export function checkName(name) {
  if (name.length === 0) throw new ManifestError('manifest has an empty file name');
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    throw new ManifestError(`manifest file name is longer than ${MAX_NAME_BYTES} bytes`);
  }
  if (name === '.' || name === '..') throw new ManifestError(`manifest file name "${name}" is not a file name`);
  for (const ch of name) {
    const c = ch.codePointAt(0);
    const control = c < 0x20 || (c >= 0x7f && c <= 0x9f); // Unicode category Cc
    const surrogate = c >= 0xd800 && c <= 0xdfff; // a lone one: for-of pairs valid ones
    const separator = c === 0x2028 || c === 0x2029; // Zl, Zp: they break one-line output
    if (ch === '/' || ch === '\\' || control || surrogate || separator || BIDI.has(ch)) {
      throw new ManifestError('manifest file name contains a path separator or control character');
    }
    if (WINDOWS_FORBIDDEN.has(ch)) {
      throw new ManifestError(`manifest file name contains "${ch}", which Windows refuses in a name`);
    }
  }
  // Windows drops trailing dots and spaces: "evil.exe." would be written as "evil.exe".
  if (name.endsWith('.') || name.endsWith(' ')) {
    throw new ManifestError('manifest file name ends with a dot or a space');
  }
  if (DEVICE.test(name.split('.', 1)[0].replace(/ +$/, ''))) {
    throw new ManifestError('manifest file name is a Windows device name');
  }
}

const MAX_ENTRIES = 2 ** 20;
const MAX_PATH_BYTES = 4096;
const MAX_DEPTH = 64;

function utf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ManifestError('manifest file name is not UTF-8');
  }
}

// What a case-insensitive, normalizing file system sees as one name (Python: NFC, casefold;
// toLowerCase differs from casefold only for a few letters such as ß).
const fold = (path) => path.normalize('NFC').toLowerCase();

/** Compare paths component by component by code point (= UTF-8 byte order). */
function comparePaths(a, b) {
  const x = a.split('/');
  const y = b.split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) {
      // Strings compare by UTF-16 unit in JS; by code point is what UTF-8 order is.
      const cx = [...x[i]].map((c) => c.codePointAt(0));
      const cy = [...y[i]].map((c) => c.codePointAt(0));
      for (let k = 0; k < Math.min(cx.length, cy.length); k++) {
        if (cx[k] !== cy[k]) return cx[k] - cy[k];
      }
      return cx.length - cy.length;
    }
  }
  return x.length - y.length;
}

/** The entry list of a version-2 manifest, with the rules of p2pcli/manifest.py. */
function decodeTree(u, view, log2, rootLength) {
  let pos = 8;
  if (rootLength > MAX_NAME_BYTES || u.length < pos + rootLength + 4) {
    throw new ManifestError('manifest is truncated or has a bad name length');
  }
  const root = utf8(u.subarray(pos, pos + rootLength));
  if (root) checkName(root);
  pos += rootLength;
  const count = view.getUint32(pos);
  pos += 4;
  if (count > MAX_ENTRIES) throw new ManifestError(`manifest lists ${count} entries, more than ${MAX_ENTRIES}`);
  const files = [];
  const folders = [];
  const folded = new Set();
  const prefixes = new Set();
  let last = null;
  let total = 0;
  for (let n = 0; n < count; n++) {
    if (u.length < pos + 3) throw new ManifestError('manifest is truncated in its file list');
    const kind = u[pos];
    const length = view.getUint16(pos + 1);
    pos += 3;
    if ((kind !== 0 && kind !== 1) || u.length < pos + length + 8) {
      throw new ManifestError('manifest has a bad entry in its file list');
    }
    const path = utf8(u.subarray(pos, pos + length));
    pos += length;
    const size = view.getUint32(pos) * 2 ** 32 + view.getUint32(pos + 4);
    pos += 8;
    if (!path || length > MAX_PATH_BYTES) throw new ManifestError('manifest path is empty or too long');
    const parts = path.split('/');
    if (parts.length > MAX_DEPTH) throw new ManifestError(`manifest path is more than ${MAX_DEPTH} folders deep`);
    parts.forEach(checkName);
    if (last !== null && comparePaths(path, last) <= 0) {
      throw new ManifestError('manifest entries are not in canonical order');
    }
    last = path;
    if (kind === 1 && size) throw new ManifestError('manifest folder has a size');
    if (size > MAX_SIZE) throw new ManifestError(`file size ${size} out of range`);
    const f = fold(path);
    if (folded.has(f)) throw new ManifestError('manifest paths collide on case-insensitive systems');
    folded.add(f);
    for (let i = 1; i < parts.length; i++) prefixes.add(fold(parts.slice(0, i).join('/')));
    if (kind === 1) folders.push(path);
    else files.push({ path, size, offset: total });
    total += size;
  }
  for (const f of folded) {
    if (prefixes.has(f)) {
      throw new ManifestError('manifest lists a file (or empty folder) that is also a folder holding other entries');
    }
  }
  if (total > MAX_SIZE) throw new ManifestError(`total size ${total} out of range`);
  const pieceSize = 2 ** log2;
  const hashBytes = u.length - pos;
  if (hashBytes !== HASH_LEN * Math.ceil(total / pieceSize)) {
    throw new ManifestError(
      `manifest has ${hashBytes} bytes of piece hashes, expected ${HASH_LEN * Math.ceil(total / pieceSize)}`);
  }
  const first = (files[0] || { path: folders[0] || '(empty)' }).path.split('/').pop();
  const title = root || (files.length > 1 ? `${first} and ${files.length - 1} more` : first);
  const m = new Manifest(title, total, pieceSize, u.slice(pos), u.slice(), files);
  m.folders = folders;
  m.root = root;
  return m;
}

/** Parse manifest bytes. Throws only ManifestError on bad input. */
export function decodeManifest(bytes) {
  const u = bytes;
  if (u.length < 8) throw new ManifestError('manifest is truncated');
  if (MAGIC.some((b, i) => u[i] !== b)) throw new ManifestError('not a p2p manifest (bad magic)');
  if (u[4] === 2) {
    const log2 = u[5];
    if (log2 < 14 || log2 > 24) throw new ManifestError(`piece size 2^${log2} out of range`);
    const v = new DataView(u.buffer, u.byteOffset, u.byteLength);
    return decodeTree(u, v, log2, v.getUint16(6));
  }
  if (u[4] !== 1) throw new ManifestError(`unsupported manifest version ${u[4]}; reload the page`);
  const log2 = u[5];
  if (log2 < 14 || log2 > 24) throw new ManifestError(`piece size 2^${log2} out of range`);
  const view = new DataView(u.buffer, u.byteOffset, u.byteLength);
  const nameLength = view.getUint16(6);
  if (nameLength < 1 || nameLength > MAX_NAME_BYTES || u.length < 8 + nameLength + 8) {
    throw new ManifestError('manifest is truncated or has a bad name length');
  }
  let name;
  try {
    name = new TextDecoder('utf-8', { fatal: true }).decode(u.subarray(8, 8 + nameLength));
  } catch {
    throw new ManifestError('manifest file name is not UTF-8');
  }
  checkName(name);
  const pos = 8 + nameLength;
  const size = view.getUint32(pos) * 2 ** 32 + view.getUint32(pos + 4);
  if (size > MAX_SIZE) throw new ManifestError(`file size ${size} out of range`);
  const pieceSize = 2 ** log2;
  const count = Math.ceil(size / pieceSize);
  const hashBytes = u.length - pos - 8;
  if (hashBytes !== HASH_LEN * count) {
    throw new ManifestError(
      `manifest has ${hashBytes} bytes of piece hashes, expected ${HASH_LEN * count}`);
  }
  return new Manifest(name, size, pieceSize, u.slice(pos + 8), u.slice());
}

/** Parse manifest bytes received from a peer, checking they hash to `contentHash`. */
export async function decodeVerified(bytes, contentHash) {
  const digest = await sha256(bytes);
  if (!equalBytes(digest, contentHash)) {
    throw new ManifestError(
      `manifest hashes to ${toHex(digest).slice(0, 16)}..., not the content hash asked for`);
  }
  return decodeManifest(bytes);
}
