// Runs the browser player's codecs on inputs from tests/test_browser.py and prints what
// they produce as JSON, so the test can compare them with the Python implementation.
//   node tests/js/web_vectors.mjs < request.json
// request: {manifest: hex, contentHash: hex, badManifests: [hex], media: [path]}
//      or: {limits: {manifestSizes: [int|null], attempts: [int]}} for the peer limits only

import { readFileSync } from 'node:fs';

import { decodeManifest, decodeVerified } from '../../p2pcli/web/js/manifest.js';
import * as media from '../../p2pcli/web/js/media.js';
import { fromHex, toHex } from '../../p2pcli/web/js/sha256.js';
import { BUSY, retryDelay } from '../../p2pcli/web/js/swarm.js';
import * as wire from '../../p2pcli/web/js/wire.js';

const req = JSON.parse(readFileSync(0, 'utf8'));
const out = {};

if (req.limits) {
  // What one peer may take from the page, and how it waits for a busy one.
  process.stdout.write(JSON.stringify({
    manifestRequestLimit: req.limits.manifestSizes.map((n) => wire.manifestRequestLimit(n)),
    retryDelayMs: req.limits.attempts.map((n) => retryDelay(n)),
    busy: BUSY,
    manifestChunk: wire.MANIFEST_CHUNK,
  }));
  process.exit(0);
}

const hash = fromHex('11'.repeat(32));
const peer = fromHex('22'.repeat(16));
out.wire = {
  handshake: toHex(wire.encodeHandshake(hash, peer, 65536)),
  close: toHex(wire.encodeClose('bye ✓')),
  manifest_request: toHex(wire.encodeManifestRequest(7, 65472)),
  manifest_data: toHex(wire.encodeManifestData(100, 7, Uint8Array.of(1, 2, 3))),
  bitfield: toHex(wire.encodeBitfield(wire.bitfieldFrom([1, 0, 0, 1, 1, 0, 0, 0, 0, 1], 10))),
  have_all: toHex(wire.encodeHaveAll()),
  have: toHex(wire.encodeHave(77)),
  request: toHex(wire.encodeRequest(1, 65536, 65536)),
  piece: toHex(wire.encodePiece(1, 65536, Uint8Array.of(9, 8))),
  cancel: toHex(wire.encodeCancel(1, 2, 3)),
  reject: toHex(wire.encodeReject(4, 5, 6)),
};

const m = await decodeVerified(fromHex(req.manifest), fromHex(req.contentHash));
out.manifest = {
  name: m.name,
  size: m.size,
  pieceSize: m.pieceSize,
  pieceCount: m.pieceCount,
  lastHash: toHex(m.pieceHash(m.pieceCount - 1)),
};
out.badManifests = req.badManifests.map((hex) => {
  try {
    decodeManifest(fromHex(hex));
    return null;
  } catch (e) {
    return e.message;
  }
});
try {
  await decodeVerified(fromHex(req.manifest), fromHex('00'.repeat(32)));
  out.wrongHash = null;
} catch (e) {
  out.wrongHash = e.message;
}

out.media = req.media.map((path) => {
  const bytes = new Uint8Array(readFileSync(path));
  const kind = media.sniff(bytes);
  const info = kind === 'mp4' ? media.probeMp4(bytes, bytes.length)
    : kind === 'webm' ? media.probeWebm(bytes, bytes.length) : null;
  const result = { path, kind, info: info && { ...info, tracks: undefined } };
  if (kind === 'mp4' && info.fragmented) {
    const start = media.mfraStart(bytes.subarray(bytes.length - 16), bytes.length);
    result.index = start === null ? null : media.parseMfra(bytes.subarray(start), info.tracks);
  } else if (kind === 'webm' && info.cuesOffset !== null) {
    result.index = media.parseCues(bytes.subarray(info.cuesOffset), info);
  }
  if (kind) {
    // Fragment starts found by scanning, for seeking without an index.
    const starts = [];
    let at = info.initEnd;
    while (starts.length < 1000) {
      const next = media.findFragment(kind, bytes, at);
      if (next < 0) break;
      starts.push(next);
      at = next + 1;
    }
    result.scanned = starts;
  }
  return result;
});

process.stdout.write(JSON.stringify(out));
