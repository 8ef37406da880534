// WebTorrent's own time to first peer and first byte, through one WebSocket tracker, for
// benchmarks/rendezvous.py (issue 15: p2p's time to first byte through each rendezvous is
// measured against this, in the same run).
//
// Two roles, each its own process, so the benchmark can run them in two network namespaces
// (a seeder in one home, a leecher in another, the tracker in the public namespace):
//
//   node wt_timing.mjs seed --file PATH --announce ws://HOST:PORT [--stun stun:HOST:PORT]
//                          [--bind ADDR] [--piece-length BYTES] [--end-of-candidates 1] [--upload-limit B]
//     Seeds PATH to that tracker only; prints one JSON line {"magnet": ..., "info_hash": ...}
//     once it has announced, then seeds until SIGTERM/SIGINT.
//
//   node wt_timing.mjs leech --magnet URI --out DIR [--stun ...] [--bind ADDR] [--timeout S]
//                           [--end-of-candidates 1]
//     Adds the magnet (its tr= is the only tracker) and prints one JSON line when done:
//       wire_s        client.add -> the torrent's first 'wire' event (first peer connected)
//       first_byte_s  client.add -> its first 'download' event: the first bytes a peer sent
//                     (WebTorrent counts every byte of the wire, its handshake included)
//       first_block_s client.add -> the first PIECE message (the first block of content)
//       verified_s    client.add -> its first 'verified' event (first piece hash-checked)
//       done_s        client.add -> 'done'
//       since_start   the same from the process's own start (performance.now(): node's
//                     time origin), so module loading and client creation are counted too
//       addr          the first wire's remote address (the candidate WebTorrent connected to)
//
// WebRTC only: no DHT, no LSD, no uTP, no UPnP/NAT-PMP, no web seeds, and only the given
// tracker. ICE servers are the --stun URL alone (none without it); --bind keeps
// libdatachannel's candidates to one address (127.0.0.1 on loopback).
//
// Install: `npm ci` in tests/js (webtorrent 2.8.5 is pinned there; see package.json's
// description for the overrides it needs).

import { mkdirSync } from 'node:fs';

function parseArgs() {
  const [role, ...a] = process.argv.slice(2);
  const o = { role, file: '', announce: '', magnet: '', out: '', stun: '', bind: '',
    'piece-length': 0, timeout: 120, 'end-of-candidates': '0', 'upload-limit': '-1' };
  for (let i = 0; i < a.length; i += 2) {
    const key = a[i].replace(/^--/, '');
    if (!(key in o) || a[i + 1] === undefined) throw new Error(`bad option ${a[i]}`);
    o[key] = a[i + 1];
  }
  if (role !== 'seed' && role !== 'leech') throw new Error('first argument: seed or leech');
  return o;
}

// webrtc-polyfill (node-datachannel under WebTorrent in node) never fires the end-of-
// candidates event (`icecandidate` with a null candidate) that browsers fire when ICE
// gathering completes. simple-peer, with the trackers' trickle: false, waits for that event
// before it sends an offer or an answer, and without it gives up waiting after its 5 s
// iceCompleteTimeout: 10 s per connection (offer, then answer) that a browser would not
// spend. --end-of-candidates 1 fires it at gathering's end, as a browser does, to measure
// WebTorrent without that artefact of running it in node.
async function endOfCandidates() {
  const { RTCPeerConnection } = await import('webrtc-polyfill');
  const dispatch = RTCPeerConnection.prototype.dispatchEvent;
  RTCPeerConnection.prototype.dispatchEvent = function (ev) {
    const r = dispatch.call(this, ev);
    if (ev.type === 'icegatheringstatechange' && this.iceGatheringState === 'complete') {
      this.onicecandidate?.({ candidate: null });
    }
    return r;
  };
}

async function client(o) {
  if (o['end-of-candidates'] === '1') await endOfCandidates();
  const { default: WebTorrent } = await import('webtorrent');
  const rtcConfig = { iceServers: o.stun ? [{ urls: o.stun }] : [] };
  if (o.bind) rtcConfig.bindAddress = o.bind;
  // --upload-limit B (bytes/s): a seeder slow enough that a test can interrupt a fetch.
  return new WebTorrent({ dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false,
    webSeeds: false, tracker: { rtcConfig }, uploadLimit: Number(o['upload-limit']) });
}

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function fail(message) {
  process.stderr.write(`wt_timing: ${message}\n`);
  process.exit(1);
}

async function seed(o) {
  const c = await client(o);
  c.on('error', (err) => fail(`seeder: ${err.message ?? err}`));
  const opts = { announce: [o.announce] };
  if (Number(o['piece-length'])) opts.pieceLength = Number(o['piece-length']);
  c.seed(o.file, opts, (t) => {
    // Ready to serve once the tracker has our announce: a leecher started earlier than
    // that would measure the seeder's start-up, not its own time to a peer.
    t.once('trackerAnnounce', () => say({ magnet: t.magnetURI, info_hash: t.infoHash }));
    t.on('warning', (err) => process.stderr.write(`warning: ${err.message ?? err}\n`));
  });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => c.destroy(() => process.exit(0)));
}

async function leech(o) {
  mkdirSync(o.out, { recursive: true });
  const c = await client(o);
  c.on('error', (err) => fail(`leecher: ${err.message ?? err}`));
  const t0 = performance.now();
  const t = c.add(o.magnet, { path: o.out });
  const at = {};
  let addr = null;
  const mark = (name) => { at[name] ??= performance.now(); };
  t.on('wire', (wire, a) => {
    mark('wire');
    addr ??= a ?? wire.remoteAddress ?? null;
    wire.once('piece', () => mark('first_block'));
  });
  t.on('download', () => mark('first_byte'));
  t.on('verified', () => mark('verified'));
  t.on('warning', (err) => process.stderr.write(`warning: ${err.message ?? err}\n`));
  const deadline = setTimeout(() => fail(`no 'done' within ${o.timeout} s (${JSON.stringify(at)})`),
    Number(o.timeout) * 1000);
  t.on('done', () => {
    mark('done');
    clearTimeout(deadline);
    const round = (x) => Math.round(x) / 1000;
    const names = ['wire', 'first_byte', 'first_block', 'verified', 'done'];
    const out = Object.fromEntries(names.map((n) => [`${n}_s`, round(at[n] - t0)]));
    out.since_start = Object.fromEntries(names.map((n) => [`${n}_s`, round(at[n])]));
    out.addr = addr;
    out.bytes = t.downloaded;
    say(out);
    c.destroy(() => process.exit(0));
  });
}

const o = parseArgs();
if (o.role === 'seed') seed(o);
else leech(o);
