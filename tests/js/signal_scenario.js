// Every signaling event, driven with the official socket.io-client v4 (docs/SIGNALING.md).
//
//   node signal_scenario.js URL MODE      MODE: websocket | polling | default
//
// "default" is the client's own choice: long-polling first, then the upgrade to WebSocket.
// Prints one JSON line {"ok": true, "transport": ..., "checks": [...]} and exits 0, or
// prints the failed check and exits 1. tests/test_signaling_node.py runs it.
'use strict';
const assert = require('node:assert/strict');
const { io } = require('socket.io-client');

const [url, mode] = process.argv.slice(2);
const EVENTS = ['peer-list', 'new-peer', 'peer-left', 'offer', 'answer', 'ice-candidate', 'error'];
const WAIT = 10000;
const checks = [];
const sockets = [];

function check(name, fn) {
  return Promise.resolve(fn()).then(() => checks.push(name));
}

// A client that queues every event so tests can await them in order.
function connect() {
  const opts = { forceNew: true, reconnection: false, timeout: WAIT };
  if (mode !== 'default') opts.transports = [mode];
  const socket = io(url, opts);
  sockets.push(socket);
  const inbox = {};
  const waiters = {};
  for (const ev of EVENTS) {
    inbox[ev] = [];
    waiters[ev] = [];
    socket.on(ev, (data) => {
      const w = waiters[ev].shift();
      if (w) w(data); else inbox[ev].push(data);
    });
  }
  socket.next = (ev, ms = WAIT) => {
    if (inbox[ev].length) return Promise.resolve(inbox[ev].shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${ev} within ${ms} ms`)), ms);
      waiters[ev].push((data) => { clearTimeout(timer); resolve(data); });
    });
  };
  socket.nothing = async (ev, ms = 300) => {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(inbox[ev].length, 0, `unexpected ${ev}: ${JSON.stringify(inbox[ev])}`);
  };
  socket.announce = async (hash) => {
    socket.emit('announce', { hash, peerId: 'ignored-by-the-server' });
    return (await socket.next('peer-list')).peers;
  };
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function upgraded(socket) {
  if (mode !== 'default') return;
  const engine = socket.io.engine;
  if (engine.transport.name === 'websocket') return;
  await new Promise((resolve) => engine.once('upgrade', resolve));
}

async function main() {
  const room = `node-${Math.random().toString(36).slice(2)}`;
  const [a, b, c] = [await connect(), await connect(), await connect()];
  for (const s of [a, b, c]) await upgraded(s);
  const transport = a.io.engine.transport.name;
  assert.equal(transport, mode === 'polling' ? 'polling' : 'websocket');

  await check('announce: peer-list and new-peer', async () => {
    assert.deepEqual(await a.announce(room), []);
    assert.deepEqual(await b.announce(room), [a.id]);
    assert.equal((await a.next('new-peer')).peerId, b.id);
    assert.deepEqual(await c.announce(room), [a.id, b.id]);
    assert.equal((await a.next('new-peer')).peerId, c.id);
    assert.equal((await b.next('new-peer')).peerId, c.id);
  });

  for (const ev of ['offer', 'answer', 'ice-candidate']) {
    await check(`${ev}: reaches the target only, fields kept, fromPeer stamped`, async () => {
      const payload = { targetPeer: a.id, fromPeer: 'forged', sdp: 'v=0', n: [1, { x: null }] };
      b.emit(ev, payload);
      assert.deepEqual(await a.next(ev), { ...payload, fromPeer: b.id });
      await c.nothing(ev);
    });
  }

  await check('a burst of 40 relays arrives whole and in order', async () => {
    for (let i = 0; i < 40; i++) b.emit('ice-candidate', { targetPeer: a.id, i });
    for (let i = 0; i < 40; i++) assert.equal((await a.next('ice-candidate')).i, i);
  });

  await check('a stranger cannot message a peer it never met', async () => {
    const d = await connect();
    await upgraded(d);
    await d.announce(`${room}-other`);
    d.emit('offer', { targetPeer: a.id, sdp: 'evil' });
    assert.equal((await d.next('error')).code, 'unknown-peer');
    await a.nothing('offer');
    d.disconnect();
  });

  const bad = [
    ['announce', {}, 'bad-hash'],
    ['announce', { hash: 7 }, 'bad-hash'],
    ['announce', 'text', 'bad-payload'],
    ['offer', { sdp: 'no target' }, 'bad-target'],
    ['offer', { targetPeer: 'nobody' }, 'unknown-peer'],
    ['answer', 42, 'bad-payload'],
    ['ice-candidate', { targetPeer: a.id, blob: 'x'.repeat(70000) }, 'too-large'],
  ];
  for (const [ev, payload, code] of bad) {
    await check(`bad ${ev} -> error ${code}`, async () => {
      c.emit(ev, payload);
      const err = await c.next('error');
      assert.equal(err.code, code);
      assert.equal(err.event, ev);
      assert.ok(err.message);
    });
  }

  await check('acknowledgements', async () => {
    const ack = await b.timeout(WAIT).emitWithAck('announce', { hash: room });
    assert.deepEqual(ack, { ok: true, peers: [a.id, c.id] });
    assert.deepEqual(await b.next('peer-list'), { peers: [a.id, c.id], hash: room });
    assert.deepEqual(await b.timeout(WAIT).emitWithAck('offer', { targetPeer: a.id }), { ok: true });
    await a.next('offer');
    const nack = await b.timeout(WAIT).emitWithAck('offer', { targetPeer: 'nobody' });
    assert.equal(nack.ok, false);
    assert.equal(nack.code, 'unknown-peer');
    await b.next('error');
    const unknown = await b.timeout(WAIT).emitWithAck('no-such-event', {});
    assert.equal(unknown.code, 'unknown-event');
  });

  await check('peer-left when a peer disconnects', async () => {
    const gone = b.id;
    b.disconnect();
    assert.deepEqual(await a.next('peer-left'), { peerId: gone });
    assert.deepEqual(await c.next('peer-left'), { peerId: gone });
  });

  for (const s of sockets) s.disconnect();
  console.log(JSON.stringify({ ok: true, transport, checks }));
}

const deadline = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: 'scenario timed out', checks }));
  process.exit(1);
}, 45000);

main().then(
  () => { clearTimeout(deadline); process.exit(0); },
  (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err && err.stack || err), checks }));
    process.exit(1);
  },
);
