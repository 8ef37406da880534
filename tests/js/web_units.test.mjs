// Unit tests of the browser player's sans-IO modules (p2pcli/web/js), run in Node:
//   node --test tests/js/web_units.test.mjs
// tests/test_browser.py runs this file; cross-checks against the Python implementation
// live in tests/js/web_vectors.mjs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseTarget, watchPath } from '../../p2pcli/web/js/link.js';
import { Picker } from '../../p2pcli/web/js/picker.js';
import {
  BUSY, iceServersFrom, MAX_BACKLOG, MAX_REDIALS, Rate, retryDelay, Swarm,
} from '../../p2pcli/web/js/swarm.js';
import { sha256js, toHex } from '../../p2pcli/web/js/sha256.js';
import * as wire from '../../p2pcli/web/js/wire.js';
import { offsetForTime } from '../../p2pcli/web/js/media.js';
import { Manifest } from '../../p2pcli/web/js/manifest.js';
import { CACHE_BYTES, Lru, MemoryBackend, OpfsBackend, OPFS_DIR, PieceStore } from '../../p2pcli/web/js/store.js';

const HASH = new Uint8Array(32).fill(7);
const ID = new Uint8Array(16).fill(1);
const OTHER = new Uint8Array(16).fill(2);

function connected(pieceCount = 4, pieceSize = 16384, size = 4 * 16384) {
  const p = new wire.PeerProtocol(HASH, ID, 65536);
  p.receive(wire.encodeHandshake(HASH, OTHER, 65536));
  p.setGeometry(new wire.Geometry(pieceCount, pieceSize, size));
  return p;
}

test('sha256js matches SubtleCrypto at every padding boundary', async () => {
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 70001]) {
    const data = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 0xff);
    const subtle = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
    assert.equal(toHex(sha256js(data)), toHex(subtle), `length ${n}`);
    // A view into a larger buffer hashes only its own bytes.
    const big = new Uint8Array(n + 10);
    big.set(data, 5);
    assert.equal(toHex(sha256js(big.subarray(5, 5 + n))), toHex(subtle));
  }
});

test('every message decodes to what was encoded', () => {
  const d = wire.decode;
  assert.deepEqual(d(wire.encodeRequest(1, 16384, 100)), { type: 'request', piece: 1, offset: 16384, length: 100 });
  assert.deepEqual(d(wire.encodeCancel(2, 0, 5)), { type: 'cancel', piece: 2, offset: 0, length: 5 });
  assert.deepEqual(d(wire.encodeReject(3, 0, 5)), { type: 'reject', piece: 3, offset: 0, length: 5 });
  assert.deepEqual(d(wire.encodeHave(9)), { type: 'have', piece: 9 });
  assert.deepEqual(d(wire.encodeHaveAll()), { type: 'have-all' });
  assert.equal(d(wire.encodeClose('bye')).reason, 'bye');
  const piece = d(wire.encodePiece(4, 8, Uint8Array.of(1, 2, 3)));
  assert.deepEqual([piece.piece, piece.offset, [...piece.data]], [4, 8, [1, 2, 3]]);
  const hs = d(wire.encodeHandshake(HASH, ID, 262080));
  assert.deepEqual([hs.version, hs.maxBlock, [...hs.peerId]], [1, 262080, [...ID]]);
});

test('a close reason is cut at 512 bytes without splitting a character', () => {
  const msg = wire.encodeClose('é'.repeat(400));
  assert.ok(msg.length <= 513);
  assert.equal(wire.decode(msg).reason, 'é'.repeat(256));
});

test('malformed messages are protocol errors', () => {
  const bad = [new Uint8Array(0), Uint8Array.of(0xee), Uint8Array.of(8, 0, 0), Uint8Array.of(6, 0), 'text'];
  for (const m of bad) assert.throws(() => wire.decode(m), wire.ProtocolError);
});

test('the first message must be a handshake for the same content', () => {
  const p = new wire.PeerProtocol(HASH, ID, 65536);
  assert.throws(() => p.receive(wire.encodeHaveAll()), /first message was not a handshake/);
  const q = new wire.PeerProtocol(HASH, ID, 65536);
  assert.throws(() => q.receive(wire.encodeHandshake(new Uint8Array(32), OTHER, 65536)), /different content/);
  const r = new wire.PeerProtocol(HASH, ID, 65536);
  assert.throws(() => r.receive(wire.encodeHandshake(HASH, OTHER, 1024)), /out of range/);
});

test('data nobody asked for is refused; a cancelled block may still arrive once', () => {
  const p = connected();
  assert.throws(() => p.receive(wire.encodePiece(0, 0, new Uint8Array(16384))), /unrequested/);
  const q = connected();
  q.sendRequest(1, 0, 16384);
  q.sendCancel(1, 0, 16384);
  q.receive(wire.encodePiece(1, 0, new Uint8Array(16384)));
  assert.throws(() => q.receive(wire.encodePiece(1, 0, new Uint8Array(16384))), /unrequested/);
});

test('requests must lie within the piece and the advertised block size', () => {
  const p = connected(2, 16384, 20000);
  p.receive(wire.encodeRequest(1, 0, 3616));
  assert.throws(() => p.receive(wire.encodeRequest(1, 0, 3617)), /past the end/);
  assert.throws(() => p.receive(wire.encodeRequest(2, 0, 10)), /beyond the last piece/);
  assert.throws(() => p.receive(wire.encodeRequest(0, 0, 70000)), /limit/);
});

test('bitfields: exact length, spare bits zero, only one', () => {
  assert.deepEqual(wire.bitfieldPieces(wire.bitfieldFrom([1, 0, 1, 1, 0, 0, 0, 0, 1], 9), 9), [0, 2, 3, 8]);
  assert.throws(() => wire.bitfieldPieces(Uint8Array.of(0xff, 0xff), 9), /spare bits/);
  assert.throws(() => wire.bitfieldPieces(Uint8Array.of(0xff), 9), /bitfield of 1 bytes/);
  const p = connected();
  p.receive(wire.encodeHaveAll());
  assert.throws(() => p.receive(wire.encodeHaveAll()), /second bitfield/);
});

test('manifest data must answer the request', () => {
  const p = connected();
  assert.throws(() => p.receive(wire.encodeManifestData(10, 0, new Uint8Array(10))), /nobody asked/);
  p.sendManifestRequest(0, 100);
  assert.throws(() => p.receive(wire.encodeManifestData(10, 0, new Uint8Array(9))), /does not match/);
  p.sendManifestRequest(0, 100);
  p.receive(wire.encodeManifestData(10, 0, new Uint8Array(10)));
});

// -- serving the manifest (issue 12 item 8) --------------------------------------------------

// Manifest sizes around the chunk boundaries, and null: we have no manifest yet.
const CHUNK = wire.MANIFEST_CHUNK;
const MANIFEST_SIZES = [null, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7, 16 << 20];

function serving(size) {
  const p = new wire.PeerProtocol(HASH, ID, 65536);
  p.receive(wire.encodeHandshake(HASH, OTHER, 65536));
  if (size !== null) p.setLocalManifestSize(size);
  return p;
}

/** Read the manifest chunk by chunk, as a requester should; returns requests sent. */
function readThrough(p, manifest) {
  let offset = 0;
  for (let n = 1; ; n++) {
    p.receive(wire.encodeManifestRequest(offset, CHUNK));
    const answer = wire.decode(p.manifestAnswer(manifest));
    p.manifestAnswered();
    offset += answer.data.length;
    if (!answer.total || offset >= answer.total) return n;
  }
}

test('a requester may read the manifest twice, but not again and again', () => {
  for (const size of MANIFEST_SIZES) {
    const manifest = size === null ? null : new Uint8Array(size);
    const p = serving(size);
    const sent = readThrough(p, manifest) + readThrough(p, manifest);
    const limit = wire.manifestRequestLimit(size);
    assert.ok(sent <= limit, `size ${size}`);
    // Whatever else it asks for, it is cut off at the limit.
    assert.throws(() => {
      for (let i = 0; i < limit - sent + 1; i++) {
        p.receive(wire.encodeManifestRequest(0, CHUNK));
        p.manifestAnswered();
      }
    }, /manifest again and again/, `size ${size}`);
  }
});

test('a second manifest request before the answer is a flood', () => {
  for (const size of MANIFEST_SIZES) {
    const p = serving(size);
    p.receive(wire.encodeManifestRequest(0, 100));
    assert.throws(() => p.receive(wire.encodeManifestRequest(0, 100)), /before the previous one was answered/);
  }
});

test('the manifest answer is built once asked, clipped to the manifest', () => {
  const p = serving(150);
  assert.throws(() => p.manifestAnswer(new Uint8Array(150)), /no manifest request/);
  p.receive(wire.encodeManifestRequest(100, 100));
  const bytes = Uint8Array.from({ length: 150 }, (_, i) => i);
  const answer = wire.decode(p.manifestAnswer(bytes));
  assert.deepEqual([answer.total, answer.offset, [...answer.data]], [150, 100, [...bytes.subarray(100)]]);
  assert.deepEqual(wire.decode(p.manifestAnswer(null)).total, 0);
  p.manifestAnswered();
  p.receive(wire.encodeManifestRequest(0, 100)); // building it twice did not count twice
});

test('the manifest budget grows when our manifest arrives', () => {
  const p = serving(null);
  readThrough(p, null);
  p.setLocalManifestSize(5 * CHUNK);
  readThrough(p, new Uint8Array(5 * CHUNK));
  readThrough(p, new Uint8Array(5 * CHUNK));
});

test('no manifest request pattern draws more than the budget', () => {
  const size = 3 * CHUNK + 11;
  const manifest = new Uint8Array(size);
  for (let seed = 1; seed <= 50; seed++) {
    const p = serving(size);
    let drawn = 0;
    let x = seed;
    try {
      for (let i = 0; i < 3000; i++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        p.receive(wire.encodeManifestRequest((i * 7919) % size, 1 + (x % CHUNK)));
        drawn += wire.decode(p.manifestAnswer(manifest)).data.length;
        p.manifestAnswered();
      }
    } catch (e) {
      if (!(e instanceof wire.ProtocolError)) throw e;
    }
    assert.ok(drawn <= 2 * (size + CHUNK) + wire.MANIFEST_REQUEST_SLACK * CHUNK, `seed ${seed}: ${drawn}`);
  }
});

test('a busy peer is asked again soon, then less and less often, never past 30 s', () => {
  const delays = Array.from({ length: 20 }, (_, i) => retryDelay(i + 1));
  assert.equal(delays[0], 2000);
  assert.deepEqual(delays, [...delays].sort((a, b) => a - b));
  assert.equal(Math.max(...delays), 30000);
});

test('a full page answers an offer with busy rather than leaving it unanswered', async () => {
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null });
  const sent = [];
  swarm.socket = { emit: (kind, payload) => sent.push([kind, payload]) };
  swarm.maxPeers = 0; // every slot taken (no RTCPeerConnection in Node to fill them)
  await swarm.onSignal('offer', 'newcomer', { hash: swarm.contentId, offer: { type: 'offer', sdp: '' } });
  assert.equal(sent.length, 1);
  const [kind, payload] = sent[0];
  assert.equal(kind, 'answer');
  assert.equal(payload.targetPeer, 'newcomer');
  assert.ok(payload.busy.startsWith(BUSY), payload.busy);
  assert.equal(payload.answer, undefined);
  assert.equal(swarm.sessions.size, 0);
});

test('a peer that said busy is offered again on the back-off, until it leaves', () => {
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null });
  const offered = [];
  swarm.maybeConnect = (id) => offered.push(id);
  swarm.refusedBusy({ id: 'seeder' }, `${BUSY}full`);
  const first = swarm.busyPeers.get('seeder').at;
  swarm.retryBusy(first - 1);
  assert.deepEqual(offered, []);
  swarm.retryBusy(first);
  assert.deepEqual(offered, ['seeder']);
  for (let i = 0; i < 6; i++) swarm.refusedBusy({ id: 'seeder' }, `${BUSY}full`); // it said busy again
  const { attempts, at } = swarm.busyPeers.get('seeder');
  assert.equal(attempts, 7);
  swarm.retryBusy(at);
  assert.deepEqual(offered, ['seeder', 'seeder']);
  assert.ok(Math.abs(swarm.busyPeers.get('seeder').at - at - retryDelay(8)) < 1e-6);
  swarm.busyPeers.delete('seeder'); // what peer-left and a handshake do
  swarm.retryBusy(Infinity);
  assert.equal(offered.length, 2);
});

// A stand-in for RTCPeerConnection (Node has none): enough for PeerLink to offer, answer and
// carry one data channel whose opening and closing the test drives by hand.
class FakeChannel {
  constructor(label = 'p2p') {
    this.label = label;
    this.readyState = 'connecting';
    this.sent = [];
  }

  send(bytes) {
    this.sent.push(bytes);
  }

  close() {}
}

class FakePeerConnection {
  constructor() {
    this.connectionState = 'new';
  }

  createDataChannel(label) {
    return new FakeChannel(label);
  }

  async createOffer() {
    return { type: 'offer', sdp: 'v=0' };
  }

  async createAnswer() {
    return { type: 'answer', sdp: 'v=0' };
  }

  async setLocalDescription(d) {
    this.localDescription = d;
  }

  async setRemoteDescription() {}

  close() {
    this.connectionState = 'closed';
  }
}

/** A page's swarm in Node: fake peer connections, and a signaling socket that records. */
function pageSwarm() {
  globalThis.RTCPeerConnection = FakePeerConnection;
  const handlers = {};
  const socket = { id: 'me', on: (name, fn) => { handlers[name] = fn; }, emit: () => {}, close: () => {} };
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: () => socket });
  swarm.start();
  clearInterval(swarm.ticker); // the test calls the housekeeping itself
  return { swarm, handlers };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** We offer to `id` (it was in a peer list) and the channel opens. */
async function linkTo(swarm, id) {
  swarm.maybeConnect(id);
  const s = swarm.sessions.get(id);
  await tick(); // the offer is made
  s.link.channel.readyState = 'open';
  s.link.channel.onopen();
  return s;
}

/** The channel closes under us: no CLOSE message came first. */
function lose(s) {
  s.link.channel.readyState = 'closed';
  s.link.channel.onclose();
}

test('what we answer a message that comes before the open event goes out, handshake first, once the channel opens', async () => {
  const { swarm } = pageSwarm();
  swarm.maybeConnect('seeder');
  const s = swarm.sessions.get('seeder');
  await tick();
  const channel = s.link.channel;
  assert.equal(channel.readyState, 'connecting');
  // Chromium delivers the remote's HANDSHAKE while the channel still reads 'connecting'.
  channel.onmessage({ data: wire.encodeHandshake(HASH, OTHER, 65536).slice().buffer });
  assert.deepEqual(channel.sent, [], 'nothing can be sent yet');
  channel.readyState = 'open';
  channel.onopen();
  assert.ok(channel.sent.length >= 2, 'our handshake and the manifest request');
  const theirs = new wire.PeerProtocol(HASH, OTHER, 65536);
  assert.equal(theirs.receive(channel.sent[0]).type, 'handshake');
  assert.equal(theirs.receive(channel.sent[1]).type, 'manifest-request');
  swarm.close();
});

test('a channel announced already open sends nothing before its open event, then all in order', async () => {
  // Chromium: the remote's channel reads 'open' in ondatachannel, and a message sent
  // before the 'open' event that follows can vanish (our HANDSHAKE did; HAVE_ALL came first).
  const { swarm } = pageSwarm();
  await swarm.onSignal('offer', 'peer', { hash: swarm.contentId, offer: { type: 'offer', sdp: 'v=0' } });
  const s = swarm.sessions.get('peer');
  const channel = new FakeChannel();
  channel.readyState = 'open';
  s.link.pc.ondatachannel({ channel });
  await tick();
  swarm.onMessage(s, wire.encodeHandshake(HASH, OTHER, 65536)); // theirs came first
  assert.deepEqual(channel.sent, []);
  channel.onopen();
  const theirs = new wire.PeerProtocol(HASH, OTHER, 65536);
  assert.equal(theirs.receive(channel.sent[0]).type, 'handshake');
  assert.equal(theirs.receive(channel.sent[1]).type, 'manifest-request');
  swarm.close();
});

test('a peer that left the room before its handshake is dropped quietly at the timeout', async (t) => {
  // Its process died right after the channel opened: no ban, no "error" for the user.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { swarm, handlers } = pageSwarm();
  swarm.maybeConnect('peer');
  const s = swarm.sessions.get('peer');
  for (let i = 0; i < 10; i++) await Promise.resolve(); // the offer is made
  s.link.channel.readyState = 'open';
  s.link.channel.onopen();
  handlers['peer-left']({ peerId: 'peer' });
  assert.equal(swarm.sessions.get('peer'), s, 'an open link is kept when its peer leaves');
  const left = [];
  swarm.on('peer-left', (ev) => left.push(ev));
  t.mock.timers.tick(10000);
  assert.equal(swarm.sessions.has('peer'), false);
  assert.equal(swarm.banned.has('peer'), false);
  assert.deepEqual(left, []);
  swarm.close();
});

test('a link that ends without a CLOSE is offered again on the busy schedule, a few times in a row', async () => {
  const { swarm } = pageSwarm();
  let s = await linkTo(swarm, 'seeder');
  const before = performance.now();
  lose(s);
  assert.equal(swarm.sessions.has('seeder'), false);
  const at = swarm.lostPeers.get('seeder');
  assert.ok(at >= before + retryDelay(1) && at <= performance.now() + retryDelay(1), 'the busy schedule');
  swarm.redialLost(at - 1);
  assert.equal(swarm.sessions.has('seeder'), false, 'not before its time');
  let offers = 1;
  for (;;) {
    swarm.redialLost(swarm.lostPeers.get('seeder'));
    if (!swarm.sessions.has('seeder')) break;
    offers += 1;
    await tick();
    s = swarm.sessions.get('seeder');
    s.link.channel.readyState = 'open';
    s.link.channel.onopen();
    lose(s); // again, and it never brought a byte
    if (!swarm.lostPeers.has('seeder')) break;
  }
  assert.equal(offers, 1 + MAX_REDIALS, 'a few redials, then it gives up');
  assert.equal(swarm.lostPeers.size, 0);
  assert.equal(swarm.stats().redialing.length, 0);
  swarm.close();
});

test('a link that brought data starts the redial count again', async () => {
  const { swarm } = pageSwarm();
  swarm.redials.set('seeder', MAX_REDIALS); // it had used up its redials
  const s = await linkTo(swarm, 'seeder');
  s.bytesDown = 1000; // then this link worked for a while
  lose(s);
  assert.ok(swarm.lostPeers.has('seeder'));
  assert.equal(swarm.redials.has('seeder'), false);
  swarm.close();
});

test('a peer that sent CLOSE, was banned, left the room, or is not needed is never redialed', async () => {
  for (const how of ['close', 'ban', 'left', 'done', 'answered']) {
    const { swarm, handlers } = pageSwarm();
    let s;
    if (how === 'answered') {
      // It offered and has nothing we know of: it redials us itself, if it wants to.
      await swarm.onSignal('offer', 'peer', { hash: swarm.contentId, offer: { type: 'offer', sdp: 'v=0' } });
      s = swarm.sessions.get('peer');
      const channel = new FakeChannel();
      channel.readyState = 'open';
      s.link.pc.ondatachannel({ channel });
      channel.onopen();
    } else {
      s = await linkTo(swarm, 'peer');
    }
    swarm.onMessage(s, wire.encodeHandshake(HASH, OTHER, 65536));
    if (how === 'close') swarm.onMessage(s, wire.encodeClose('going away'));
    if (how === 'ban') swarm.onMessage(s, new Uint8Array([0xee, 1, 2])); // a protocol error
    if (how === 'left') handlers['peer-left']({ peerId: 'peer' });
    if (how === 'done') swarm.halted = 'nothing more to download';
    if (swarm.sessions.get('peer') === s) lose(s);
    assert.equal(swarm.sessions.has('peer'), false, how);
    assert.equal(swarm.lostPeers.size, 0, how);
    swarm.redialLost(Infinity);
    assert.equal(swarm.sessions.has('peer'), false, how);
    swarm.close();
  }
});

// -- picker ---------------------------------------------------------------------------------

const lengths = (n, size = 100) => Array.from({ length: n }, () => size);

test('priority pieces come first, then the pieces after the playhead', () => {
  const p = new Picker(lengths(10), 100);
  p.addPeer('a', null);
  p.setCursor(6);
  p.setPriority([3]);
  const picked = p.pick('a', null, 4, 0).map((b) => b[0]);
  assert.deepEqual(picked, [3, 6, 7, 8]);
});

test('strict priority requests nothing else', () => {
  const p = new Picker(lengths(10), 100);
  p.addPeer('a', null);
  p.setPriority([5, 6], true);
  assert.deepEqual(p.pick('a', null, 10, 0).map((b) => b[0]), [5, 6]);
});

test('rarer pieces before common ones', () => {
  const p = new Picker(lengths(4), 100);
  p.addPeer('a', [0, 1, 2, 3]);
  p.addPeer('b', [0, 1, 3]);
  p.addPeer('c', [0, 3]);
  assert.deepEqual(p.pick('a', () => true, 4, 0).map((b) => b[0]), [2, 1, 0, 3]);
});

test('a piece in blocks; the last one is short', () => {
  const p = new Picker([250], 100);
  p.addPeer('a', null);
  assert.deepEqual(p.pick('a', null, 5, 0), [[0, 0, 100], [0, 100, 100], [0, 200, 50]]);
  assert.equal(p.onBlock('a', [0, 0, 100]).complete, false);
  p.onBlock('a', [0, 100, 100]);
  assert.equal(p.onBlock('a', [0, 200, 50]).complete, true);
});

test('end-game duplicates the last blocks, and the first copy cancels the other', () => {
  const p = new Picker(lengths(1), 100);
  p.addPeer('a', null);
  p.addPeer('b', null);
  assert.equal(p.pick('a', null, 4, 0).length, 1);
  assert.deepEqual(p.pick('b', null, 4, 0), [[0, 0, 100]]);
  const { complete, dups } = p.onBlock('b', [0, 0, 100]);
  assert.equal(complete, true);
  assert.deepEqual(dups, [['a', [0, 0, 100]]]);
});

test('expired requests are handed back', () => {
  const p = new Picker(lengths(2), 100, { requestTimeout: 1000 });
  p.addPeer('a', null);
  p.pick('a', null, 1, 0);
  assert.deepEqual(p.expired(500), []);
  assert.deepEqual(p.expired(1500), [['a', [0, 0, 100]]]);
  assert.equal(p.inFlight('a'), 0);
});

test('a failed piece is fetched again from scratch', () => {
  const p = new Picker(lengths(1), 100);
  p.addPeer('a', null);
  p.pick('a', null, 1, 0);
  p.onBlock('a', [0, 0, 100]);
  p.onPieceFailed(0);
  assert.deepEqual(p.pick('a', null, 1, 1), [[0, 0, 100]]);
});

test('removing a peer frees its blocks and its availability', () => {
  const p = new Picker(lengths(3), 100);
  p.addPeer('a', [0, 1]);
  p.pick('a', (i) => i < 2, 2, 0);
  assert.equal(p.removePeer('a', [0, 1]).length, 2);
  assert.deepEqual([...p.availability], [0, 0, 0]);
});

// -- links and the index --------------------------------------------------------------------

test('links, watch URLs and bare hashes', () => {
  const h = 'ab'.repeat(32);
  assert.deepEqual(parseTarget(h.toUpperCase()), { hash: h, signal: null, token: null });
  const link = `p2p://${h}?signal=http%3A%2F%2F10.0.0.1%3A8080&name=a.mp4&token=s%20t`;
  assert.deepEqual(parseTarget(link), { hash: h, signal: 'http://10.0.0.1:8080', token: 's t' });
  assert.deepEqual(parseTarget(`http://x:1/watch/${h}?token=t`), { hash: h, signal: 'http://x:1', token: 't' });
  assert.throws(() => parseTarget('hello'), /not a link or a content hash; expected a p2p:\/\/ link, a watch URL/);
  assert.throws(() => parseTarget('ftp://x'), /not a p2p link; expected a p2p:\/\/ link/);
  assert.throws(() => parseTarget('p2p://abc'), /64-hex-digit/);
  assert.equal(watchPath({ hash: h, signal: 'http://x:1', token: null }, 'http://x:1'), `/watch/${h}`);
  assert.equal(watchPath({ hash: h, signal: 'ws://y:2', token: 'k' }, 'http://x:1'),
    `/watch/${h}?signal=http%3A%2F%2Fy%3A2&token=k`);
});

test('a time maps to the last random-access point at or before it', () => {
  const index = [{ time: 0, offset: 10 }, { time: 2, offset: 500 }, { time: 4, offset: 900 }];
  assert.equal(offsetForTime(index, 0), 10);
  assert.equal(offsetForTime(index, 3.9), 500);
  assert.equal(offsetForTime(index, 4), 900);
  assert.equal(offsetForTime(index, 100), 900);
  assert.equal(offsetForTime(null, 1), null);
});

test('ice-config: STUN/TURN entries kept, anything else dropped', () => {
  const cfg = {
    iceServers: [
      { urls: 'turn:t.example:3478', username: 'u', credential: 'c' },
      { urls: ['stun:s.example', 'http://x'] },
      { urls: 'http://nope' },
      'junk',
    ],
  };
  assert.deepEqual(iceServersFrom(cfg), [
    { urls: ['turn:t.example:3478'], username: 'u', credential: 'c' },
    { urls: ['stun:s.example'] },
  ]);
  assert.deepEqual(iceServersFrom(null), []);
});

// -- the piece store (store.js) ---------------------------------------------------------------

/** A manifest of `count` pieces of 4 bytes (the last one 2), no hashes needed here. */
function tinyManifest(count = 10) {
  return new Manifest('x', 4 * count - 2, 4, new Uint8Array(32 * count), new Uint8Array(0));
}

const pieceBytes = (m, i) => new Uint8Array(m.pieceLength(i)).fill(i + 1);

/** A MemoryBackend that counts reads, as a disk would see them. */
class CountingBackend extends MemoryBackend {
  constructor() {
    super();
    this.reads = 0;
  }

  async read(...args) {
    this.reads++;
    return super.read(...args);
  }
}

test('the LRU evicts the least recently used first, and get() refreshes', () => {
  const lru = new Lru(2);
  assert.deepEqual(lru.set('a', 1), []);
  lru.set('b', 2);
  lru.get('a'); // b is now the oldest
  assert.deepEqual(lru.set('c', 3), ['b']);
  assert.equal(lru.size, 2);
  assert.equal(lru.has('a') && lru.has('c'), true);
});

test('the store keeps at most its bound in memory and reads the rest back', async () => {
  const m = tinyManifest(10);
  const disk = new CountingBackend();
  const store = new PieceStore(m, disk, { cachePieces: 3 });
  for (let i = 0; i < m.pieceCount; i++) {
    await store.put(i, pieceBytes(m, i));
    assert.ok(store.stats().cached <= 3);
  }
  assert.equal(store.complete, true);
  assert.equal(store.cached(0), null); // evicted
  assert.deepEqual(await store.get(0), pieceBytes(m, 0));
  assert.equal(disk.reads, 1);
  await store.get(0); // now in memory again
  assert.equal(disk.reads, 1);
  // A range across pieces, cut at both ends, and the short last piece.
  const all = Uint8Array.from({ length: m.size }, (_, k) => Math.floor(k / 4) + 1);
  assert.deepEqual(await store.read(3, 13), all.subarray(3, 13));
  assert.deepEqual(await store.read(30, 100), all.subarray(30));
  assert.ok(store.stats().peakCached <= 3);
  const file = await store.file('application/octet-stream');
  assert.deepEqual(new Uint8Array(await file.arrayBuffer()), all);
});

test('a piece counts as held only once stored; gaps stop reads and contiguous runs', async () => {
  const m = tinyManifest(6);
  let release;
  const opened = new Promise((ok) => { release = ok; });
  const store = new PieceStore(m, opened.then(() => new MemoryBackend()));
  const put = store.put(0, pieceBytes(m, 0));
  assert.equal(store.has(0), false); // the backend is not there yet
  release();
  await put;
  assert.equal(store.has(0), true);
  await store.put(2, pieceBytes(m, 2));
  assert.equal(store.contiguousFrom(0), 4);
  assert.equal(store.contiguousFrom(8), 4);
  assert.equal(await store.read(0, 12), null); // piece 1 is missing
  assert.equal(await store.get(1), null);
  await assert.rejects(store.file(''), /not complete/);
});

test('without OPFS (as in Node) the store keeps pieces in memory and says why', async () => {
  const m = tinyManifest(3);
  const store = PieceStore.open(m, 'ab'.repeat(32));
  await store.ready;
  assert.equal(store.stats().backend, 'memory');
  assert.match(store.stats().fallbackReason, /File System|Worker/);
  const asked = PieceStore.open(m, 'ab'.repeat(32), { memory: true });
  await asked.ready;
  assert.match(asked.stats().fallbackReason, /asked/);
});

// -- a failing disk (review of issue 14: no loop, no stall) ----------------------------------

/** A disk that fails every call from the `failAt`-th write on, as a dead worker would. */
class FailingDisk extends MemoryBackend {
  constructor(failAt) {
    super();
    this.kind = 'opfs';
    this.writes = 0;
    this.failAt = failAt;
    this.closed = false;
  }

  async write(...args) {
    if (++this.writes >= this.failAt) throw new Error('the storage worker failed: boom');
    return super.write(...args);
  }

  async read(...args) {
    if (this.writes >= this.failAt) throw new Error('the storage worker failed: boom');
    return super.read(...args);
  }

  async close() {
    this.closed = true;
  }
}

test('a failing disk is given up once for memory; pieces only on it are missing again', async () => {
  const m = tinyManifest(6);
  const disk = new FailingDisk(4);
  const failovers = [];
  const store = new PieceStore(m, disk, { cachePieces: 2, onFailover: (ev) => failovers.push(ev) });
  for (let i = 0; i < 3; i++) await store.put(i, pieceBytes(m, i));
  await store.put(3, pieceBytes(m, 3)); // the disk fails here; memory takes it
  assert.equal(failovers.length, 1);
  assert.deepEqual(failovers[0].lost, [0, 1]); // the LRU held 2 and 3
  assert.match(failovers[0].reason, /opfs storage failed: the storage worker failed: boom/);
  assert.equal(disk.closed, true);
  assert.deepEqual([0, 1, 2, 3].map((i) => store.has(i)), [false, false, true, true]);
  assert.equal(store.stats().backend, 'memory');
  assert.match(store.stats().failure, /boom/);
  // Later puts and reads go to memory and never touch the dead disk.
  const writes = disk.writes;
  for (const i of [0, 1, 4, 5]) await store.put(i, pieceBytes(m, i));
  assert.equal(disk.writes, writes);
  assert.equal(store.complete, true);
  assert.deepEqual(await store.get(0), pieceBytes(m, 0));
  assert.equal(failovers.length, 1);
  const file = await store.file('');
  assert.equal(file.size, m.size);
});

test('a read that fails gives the disk up too: an evicted piece reads as missing', async () => {
  const m = tinyManifest(4);
  const disk = new FailingDisk(5);
  const failovers = [];
  const store = new PieceStore(m, disk, { cachePieces: 2, onFailover: (ev) => failovers.push(ev) });
  for (let i = 0; i < 4; i++) await store.put(i, pieceBytes(m, i));
  disk.writes = disk.failAt; // the worker dies now
  assert.equal(await store.get(0), null);
  assert.deepEqual(failovers.map((f) => f.lost), [[0, 1]]);
  assert.deepEqual(await store.get(3), pieceBytes(m, 3)); // still in the LRU: kept
  assert.equal(await store.read(0, 8), null);
});

test('puts under way when the disk fails all land in memory, with one failover', async () => {
  const m = tinyManifest(6);
  const disk = new FailingDisk(1);
  const failovers = [];
  const store = new PieceStore(m, disk, { onFailover: (ev) => failovers.push(ev) });
  await Promise.all([0, 1, 2, 3].map((i) => store.put(i, pieceBytes(m, i))));
  assert.equal(failovers.length, 1);
  assert.deepEqual(failovers[0].lost, []);
  assert.equal(store.nHave, 4);
});

/** A Worker stand-in: answers nothing by itself; the test plays the worker's side. */
class FakeWorker {
  constructor() {
    this.posted = [];
    this.terminated = false;
  }

  postMessage(msg) {
    this.posted.push(msg);
  }

  terminate() {
    this.terminated = true;
  }
}

test('a dead storage worker fails what waits and every later call at once', async () => {
  const worker = new FakeWorker();
  const backend = new OpfsBackend(worker, 'x');
  const waiting = backend.write(0, 0, new Uint8Array(4));
  worker.onmessage({ data: { id: worker.posted[0].id, ok: true } });
  await waiting;
  const pending = backend.read(0, 0, 4);
  worker.onerror({ message: 'out of memory' });
  await assert.rejects(pending, /storage worker failed: out of memory/);
  const posted = worker.posted.length;
  await assert.rejects(backend.write(1, 4, new Uint8Array(4)), /out of memory/);
  assert.equal(worker.posted.length, posted); // not even sent
});

// -- the swarm's side: backlog, failover, serving --------------------------------------------

async function hashedManifest(count, pieceSize) {
  const pieces = Array.from({ length: count }, (_, i) => new Uint8Array(pieceSize).fill(i + 1));
  const hashes = new Uint8Array(32 * count);
  for (let i = 0; i < count; i++) {
    hashes.set(new Uint8Array(await crypto.subtle.digest('SHA-256', pieces[i])), 32 * i);
  }
  return { m: new Manifest('x', count * pieceSize, pieceSize, hashes, new Uint8Array(10)), pieces };
}

/** A connected peer with every piece, as the swarm sees it; `sent` collects what goes out. */
function fakeSession(swarm, id = 'seeder') {
  const s = {
    id,
    announced: true,
    ready: true,
    hasAll: true,
    pieces: new Set(),
    refused: new Set(),
    slots: 4,
    bytesDown: 0,
    bytesUp: 0,
    rate: new Rate(),
    upRate: new Rate(),
    serveQueue: [],
    requests: [],
    sent: [],
    has: () => true,
    proto: {
      manifestAsked: false,
      sendRequest: (...block) => { s.requests.push(block); return null; },
      sendCancel: () => null,
    },
    link: { open: true, buffered: 0, send: (bytes) => { s.sent.push(wire.decode(bytes)); return true; } },
    send: (bytes) => { if (bytes) s.link.send(bytes); },
  };
  swarm.sessions.set(id, s);
  swarm.picker.addPeer(id, null);
  return s;
}

/** A backend whose writes wait until `release()`: a disk slower than the network. */
class SlowDisk extends MemoryBackend {
  constructor() {
    super();
    this.waiting = [];
  }

  write(...args) {
    return new Promise((ok) => this.waiting.push(() => ok(super.write(...args))));
  }

  release() {
    for (const w of this.waiting.splice(0)) w();
  }
}

const settle = () => new Promise((ok) => setTimeout(ok, 20));

test('the backlog bound is the LRU bound', () => {
  assert.equal(MAX_BACKLOG, CACHE_BYTES);
});

test('requests pause while pieces wait to be stored past the backlog bound', async () => {
  const pieceSize = 16384;
  const { m, pieces } = await hashedManifest(12, pieceSize);
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null, maxBacklog: 2 * pieceSize,
    store: { memory: true } });
  swarm.setManifest(m, 'seeder');
  const disk = new SlowDisk();
  swarm.store = new PieceStore(m, disk);
  const s = fakeSession(swarm);
  swarm.refill(s);
  assert.equal(s.requests.length, 4);
  const deliver = (k) => {
    const [piece, offset, length] = s.requests[k];
    swarm.onBlock(s, { piece, offset, data: pieces[piece].subarray(offset, offset + length) });
  };
  deliver(0);
  assert.equal(s.requests.length, 5); // one piece pending: below the bound, the slot refills
  deliver(1); // two pieces pending: the bound, nothing more is asked for
  deliver(2);
  assert.equal(swarm.backlog, 3 * pieceSize);
  assert.equal(s.requests.length, 5);
  swarm.refillAll();
  assert.equal(s.requests.length, 5);
  await settle(); // hashed; the writes still wait
  assert.equal(swarm.backlog, 3 * pieceSize);
  assert.equal(s.requests.length, 5);
  disk.release();
  await settle();
  assert.equal(swarm.backlog, 0);
  assert.equal(swarm.picker.nHave, 3);
  assert.equal(s.requests.length, 3 + 4); // the slots refilled once the disk caught up
});

test('a disk failure mid-download: one warning, and the lost pieces are fetched again', async () => {
  const pieceSize = 16384;
  const { m, pieces } = await hashedManifest(6, pieceSize);
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null, store: { memory: true } });
  const warnings = [];
  const errors = [];
  swarm.on('warning', (ev) => warnings.push(ev.message));
  swarm.on('error', (ev) => errors.push(ev.message));
  swarm.setManifest(m, 'seeder');
  swarm.store = new PieceStore(m, new FailingDisk(4), {
    cachePieces: 1, onFailover: (ev) => swarm.onStorageFailover(ev),
  });
  const s = fakeSession(swarm);
  s.slots = 1; // one piece at a time: a deterministic order
  swarm.refill(s);
  for (let k = 0; k < 20 && !swarm.picker.complete; k++) {
    const [piece, offset, length] = s.requests[s.requests.length - 1];
    swarm.onBlock(s, { piece, offset, data: pieces[piece].subarray(offset, offset + length) });
    await settle();
  }
  assert.equal(swarm.picker.complete, true);
  assert.equal(swarm.store.complete, true);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /storage failed.*kept in memory from now on.*fetching the 3 pieces/);
  assert.deepEqual(errors, []);
  assert.equal(s.requests.length, 6 + 3); // every piece once, the three lost ones twice
});

test('a piece memory cannot take either stops the download with one error', async () => {
  const pieceSize = 16384;
  const { m, pieces } = await hashedManifest(4, pieceSize);
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null, store: { memory: true } });
  const errors = [];
  swarm.on('error', (ev) => errors.push(ev.message));
  swarm.setManifest(m, 'seeder');
  const broken = new MemoryBackend();
  broken.write = async () => { throw new Error('out of memory'); };
  swarm.store = new PieceStore(m, broken);
  const s = fakeSession(swarm);
  swarm.refill(s);
  for (const [piece, offset, length] of s.requests.slice()) {
    swarm.onBlock(s, { piece, offset, data: pieces[piece].subarray(offset, offset + length) });
  }
  await settle();
  assert.equal(errors.length, 1);
  assert.match(errors[0], /could not store piece \d: out of memory; the download stopped/);
  const asked = s.requests.length;
  swarm.refillAll();
  assert.equal(s.requests.length, asked);
});

test('serving: a piece storage cannot read is refused once, and no piece stays loaded', async () => {
  const pieceSize = 16384;
  const { m, pieces } = await hashedManifest(4, pieceSize);
  const swarm = new Swarm({ contentHash: HASH, signalUrl: 'http://x', io: null, store: { memory: true } });
  const warnings = [];
  swarm.on('warning', (ev) => warnings.push(ev.message));
  swarm.setManifest(m, 'seeder');
  const disk = new CountingBackend();
  swarm.store = new PieceStore(m, disk, { cachePieces: 1 });
  for (let i = 0; i < 4; i++) {
    await swarm.store.put(i, pieces[i]);
    swarm.picker.onPieceVerified(i);
  }
  const s = fakeSession(swarm, 'leecher');
  // Each piece read from disk once (an LRU of one piece), piece 0 for two blocks.
  s.serveQueue.push([0, 0, 8192], [0, 8192, 8192], [1, 0, 100], [3, 0, 100]);
  swarm.pumpServe(s);
  for (let k = 0; k < 10 && s.serveQueue.length; k++) await settle();
  assert.deepEqual(s.sent.map((e) => [e.type, e.piece, e.offset]),
    [['piece', 0, 0], ['piece', 0, 8192], ['piece', 1, 0], ['piece', 3, 0]]);
  assert.equal(disk.reads, 3);
  assert.equal(s.loaded, null);
  // Now reads fail (memory has nowhere to fail over to): one refusal per request, no loop.
  disk.read = async () => { throw new Error('gone'); };
  s.serveQueue.push([1, 0, 100], [2, 0, 100]);
  swarm.pumpServe(s);
  for (let k = 0; k < 10 && s.serveQueue.length; k++) await settle();
  assert.deepEqual(s.sent.slice(4).map((e) => [e.type, e.piece]), [['reject', 1], ['reject', 2]]);
  assert.equal(warnings.length, 2);
  assert.equal(s.serveQueue.length, 0);
});

// -- two tabs opening together (Web Locks) ---------------------------------------------------

/** Just enough of OPFS, Web Locks and a Worker for OpfsBackend.open, in Node. */
function fakeBrowser(files, heldByOthers) {
  const held = new Set(heldByOthers);
  const dir = {
    async *keys() { yield* [...files]; },
    async removeEntry(name) { files.delete(name); },
    async getFileHandle(name) { return { name }; },
  };
  const root = { async getDirectoryHandle() { return dir; } };
  const locks = {
    async request(name, fn) {
      held.add(name);
      try {
        return await fn();
      } finally {
        held.delete(name);
      }
    },
    async query() { return { held: [...held].map((name) => ({ name })), pending: [] }; },
  };
  class Worker extends FakeWorker {
    postMessage(msg) {
      super.postMessage(msg);
      if (msg.op === 'open') files.add(msg.name);
      if (msg.op === 'close') files.delete(msg.name);
      queueMicrotask(() => this.onmessage({ data: { id: msg.id, ok: true } }));
    }
  }
  return { navigator: { storage: { getDirectory: async () => root }, locks }, Worker, held };
}

test('a tab keeps the files whose lock another tab holds, and removes the rest', async () => {
  const files = new Set(['cc.other', 'dd.gone']);
  const fake = fakeBrowser(files, [`${OPFS_DIR}/cc.other`]);
  globalThis.navigator = fake.navigator;
  globalThis.Worker = fake.Worker;
  try {
    const backend = await OpfsBackend.open('ab', 100);
    assert.ok(files.has('cc.other')); // another tab's, opening or open
    assert.ok(!files.has('dd.gone')); // a closed tab's leftover
    assert.ok(files.has(backend.name));
    assert.ok(fake.held.has(`${OPFS_DIR}/${backend.name}`)); // ours, for as long as we live
    await backend.close();
    assert.ok(!files.has(backend.name));
    assert.ok(!fake.held.has(`${OPFS_DIR}/${backend.name}`));
  } finally {
    delete globalThis.navigator;
    delete globalThis.Worker;
  }
});
