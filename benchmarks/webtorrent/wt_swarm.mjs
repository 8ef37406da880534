// WebTorrent 2.x over WebRTC in node: one seeder -> one leecher, for transfer.py's
// `webtorrent` row (the design note promises to beat WebTorrent; issue 14 measures it).
//
// This process runs a WebSocket-only tracker (bittorrent-tracker) on 127.0.0.1 and forks
// two node processes, a seeder and a leecher (WebRTC through webrtc-polyfill, which is
// node-datachannel; empty ICE server list, bound to 127.0.0.1; no DHT, LSD, uTP, UPnP or
// web seeds, so the only transport is the WebRTC data channel). The seeder seeds --file
// (or --size random bytes) in 256 KiB pieces and hands its .torrent over IPC; the leecher
// is started with it and downloads to a temporary directory. Prints one JSON line:
//   mb_per_s            size / (leecher start -> done): start-up, tracker round trips
//                       and WebRTC set-up included, as p2p's end-to-end figure
//   mb_per_s_connected  size / (first wire (peer connection) -> done)
//   seed_cpu_s_per_gib, fetch_cpu_s_per_gib: process.cpuUsage() over the leecher's life
//
// Install once (not part of the test suite; a dependency's preinstall insists on pnpm,
// and nothing here needs an install script):
//   cd benchmarks/webtorrent && npm ci --ignore-scripts
// package.json pins node-datachannel 0.33.4 (0.32, webrtc-polyfill's own choice, downloads
// its binary from GitHub at install) and uint8-util 2.2.5 (2.3 breaks webtorrent 2.8.5's
// seeding: arr2hex of a hex string).
//
//   node benchmarks/webtorrent/wt_swarm.mjs [--file PATH | --size BYTES] [--timeout 600]

import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GIB = 2 ** 30;
const RTC = { iceServers: [], bindAddress: '127.0.0.1' };

function parseArgs() {
  const a = process.argv.slice(2);
  const o = { role: '', size: 64 * 2 ** 20, file: '', announce: '', torrent: '', timeout: 600 };
  for (let i = 0; i < a.length; i += 2) {
    const key = a[i].replace(/^--/, '');
    if (!(key in o) || a[i + 1] === undefined) throw new Error(`bad option ${a[i]}`);
    o[key] = a[i + 1];
  }
  o.size = Number(o.size);
  o.timeout = Number(o.timeout);
  return o;
}

async function client() {
  const { default: WebTorrent } = await import('webtorrent');
  return new WebTorrent({ dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false,
    webSeeds: false, tracker: { rtcConfig: RTC } });
}

const cpuSince = (start) => {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
};

async function seeder(o) {
  const c = await client();
  c.on('error', (err) => process.send({ error: String(err) }));
  c.seed(o.file, { announce: [o.announce], pieceLength: 256 * 1024 }, (t) => {
    process.send({ torrent: Buffer.from(t.torrentFile).toString('base64') });
  });
  let cpu0 = null;
  process.on('message', (m) => {
    if (m === 'mark') cpu0 = process.cpuUsage();
    if (m === 'report') {
      process.send({ seed_cpu_s: cpuSince(cpu0) });
      c.destroy(() => process.exit(0));
    }
  });
}

async function leecher(o) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wt-leech-'));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const c = await client();
  c.on('error', (err) => process.send({ error: String(err) }));
  const t = c.add(Buffer.from(o.torrent, 'base64'), { path: dir, announce: [o.announce] });
  let tWire = null;
  t.on('wire', () => { tWire ??= performance.now(); });
  t.on('done', () => {
    const tDone = performance.now();
    process.send({ result: { e2e_s: (tDone - t0) / 1000, connected_s: (tDone - tWire) / 1000,
      fetch_cpu_s: cpuSince(cpu0), bytes: t.downloaded } });
    c.destroy(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
}

async function coordinate(o) {
  const { Server } = await import('bittorrent-tracker');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'wt-bench-'));
  let file = o.file;
  if (!file) {
    file = path.join(tmp, 'src.bin');
    writeFileSync(file, randomBytes(o.size));
  }
  const size = statSync(file).size;
  const server = new Server({ udp: false, http: false, ws: true, stats: false });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const announce = `ws://127.0.0.1:${server.ws.address().port}`;
  const kids = [];
  let finished = false;
  function finish(code, message) {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    if (message) process.stderr.write(`wt_swarm: ${message}\n`);
    for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
    server.close();
    rmSync(tmp, { recursive: true, force: true });
    process.exitCode = code;
  }
  const deadline = setTimeout(() => finish(1, `timed out after ${o.timeout} s`),
    o.timeout * 1000);
  const me = fileURLToPath(import.meta.url);
  const spawn = (args) => {
    const k = fork(me, args);
    kids.push(k);
    k.on('exit', (code, sig) => {
      if (!finished && code !== 0) finish(1, `a child exited (${code ?? sig})`);
    });
    return k;
  };
  const seed = spawn(['--role', 'seed', '--file', file, '--announce', announce]);
  const out = {};
  seed.on('message', (m) => {
    if (m.error) finish(1, `seeder: ${m.error}`);
    if (m.torrent) {
      seed.send('mark');
      const leech = spawn(['--role', 'leech', '--announce', announce, '--torrent', m.torrent]);
      leech.on('message', (r) => {
        if (r.error) return finish(1, `leecher: ${r.error}`);
        Object.assign(out, r.result);
        seed.send('report');
      });
    }
    if (m.seed_cpu_s !== undefined) {
      if (out.bytes !== size) return finish(1, `leecher got ${out.bytes} of ${size} bytes`);
      const pkg = (name) => JSON.parse(readFileSync(path.join(HERE, 'node_modules', name,
        'package.json'), 'utf8')).version;
      process.stdout.write(JSON.stringify({
        size,
        webtorrent: pkg('webtorrent'),
        node_datachannel: pkg('node-datachannel'),
        mb_per_s: size / out.e2e_s / 1e6,
        mb_per_s_connected: size / out.connected_s / 1e6,
        e2e_s: out.e2e_s,
        connected_s: out.connected_s,
        seed_cpu_s_per_gib: m.seed_cpu_s / (size / GIB),
        fetch_cpu_s_per_gib: out.fetch_cpu_s / (size / GIB),
      }) + '\n');
      finish(0);
    }
  });
}

const o = parseArgs();
// A child whose coordinator died (killed on a timeout) has nobody to report to.
if (o.role) process.on('disconnect', () => process.exit(1));
if (o.role === 'seed') seeder(o);
else if (o.role === 'leech') leecher(o);
else coordinate(o);
