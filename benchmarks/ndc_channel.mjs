// libdatachannel's ceiling: one data channel between two node processes, nothing else.
//
// The counterpart of benchmarks/bare_channel.py for libdatachannel (C++, native usrsctp),
// through npm's node-datachannel (installed by `npm ci` in tests/js). transfer.py runs it
// in the same run as p2p and the bare aiortc channel, so their ratios mean something.
//
// What it does: this process forks two children, a sender and a receiver, each with one
// PeerConnection (no STUN/TURN: empty ICE server list, bound to 127.0.0.1, so its only
// candidate is a host candidate on loopback) and one reliable, ordered data channel. Two
// processes, like bare_channel.py and p2p, so each side has its own event loop and its CPU
// is measured alone. Signalling (descriptions and trickled candidates) goes through this
// process over node's IPC pipe. The sender sends `--size` bytes in `--msg-size` messages
// with back-pressure by bufferedAmount (above 1 MiB queued: wait for bufferedamountlow at
// 256 KiB, the figures bare_channel.py uses); the receiver counts bytes and, once it has
// them all, sends the text "ack"; the sender closes on the ack.
//
// Prints one JSON line on stdout:
//   setup_s      sender's PeerConnection creation -> channel open on the sender
//   transfer_s   sender: just before the first send -> the receiver's ack arrives
//   mb_per_s     size / transfer_s / 1e6
//   sender, receiver: cpu_s (process.cpuUsage() over the transfer phase: the sender from
//                first send to ack, the receiver from first message to sending the ack),
//                cpu_s_per_gib, cpu_whole_s (whole process life), peak_rss_bytes
//
//   node benchmarks/ndc_channel.mjs [--size 256M] [--msg-size 64K] [--mtu N] [--timeout 300]
//
// --mtu is libdatachannel's own setting (it disables path MTU discovery and sends SCTP
// packets of that size; its default is 1280 bytes, as browsers do); leave it unset to
// measure libdatachannel as it ships. Exit status 1 (and a line on stderr) if a side fails
// or the run passes --timeout seconds; both children are killed on the way out.

import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const SETUP_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;
const GIB = 2 ** 30;
const ACK = 'ack';

function parseSize(text) {
  const units = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };
  const t = String(text).trim().toUpperCase().replace(/B$/, '').replace(/I$/, '');
  const unit = units[t.at(-1)];
  return unit ? Math.round(parseFloat(t.slice(0, -1)) * unit) : parseInt(t, 10);
}

function parseArgs(argv) {
  const opts = { size: 256 * 2 ** 20, msgSize: 64 * 1024, mtu: 0, timeout: 300, role: '' };
  for (let i = 0; i < argv.length; i++) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === '--help' || key === '-h') {
      process.stdout.write('usage: node ndc_channel.mjs [--size 256M] [--msg-size 64K] ' +
        '[--mtu N] [--timeout SECONDS]\n');
      process.exit(0);
    }
    if (value === undefined) throw new Error(`${key} needs a value`);
    i++;
    if (key === '--size') opts.size = parseSize(value);
    else if (key === '--msg-size') opts.msgSize = parseSize(value);
    else if (key === '--mtu') opts.mtu = parseInt(value, 10);
    else if (key === '--timeout') opts.timeout = parseFloat(value);
    else if (key === '--role') opts.role = value;
    else throw new Error(`unknown option ${key}`);
  }
  if (!(opts.size > 0)) throw new Error('--size must be positive');
  if (!(opts.msgSize > 0 && opts.msgSize <= 256 * 1024)) throw new Error('--msg-size: 1..256K');
  return opts;
}

// node-datachannel lives in tests/js/node_modules (one package.json for every JS helper).
function loadNdc() {
  const require = createRequire(path.join(HERE, '..', 'tests', 'js', 'package.json'));
  const ndc = require('node-datachannel');
  // Its package.json is not in its "exports": read it from where the package resolved.
  const main = require.resolve('node-datachannel');
  const dir = main.slice(0, main.lastIndexOf('node-datachannel') + 'node-datachannel'.length);
  const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  return { ndc, version: `${version} (libdatachannel ${ndc.getLibraryVersion()})` };
}

function cpuSeconds(start) {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

// -- children ------------------------------------------------------------------------------

function child(opts) {
  const { ndc, version } = loadNdc();
  const config = { iceServers: [], bindAddress: '127.0.0.1' };
  if (opts.mtu) config.mtu = opts.mtu;
  const send = (msg) => process.send(msg);
  const fail = (err) => {
    send({ error: String(err && err.stack ? err.stack : err) });
    finish(1);
  };
  let pc = null;
  let finished = false;
  function finish(code) {
    if (finished) return;
    finished = true;
    try {
      pc?.close();
    } catch {
      // closing a failed connection may throw: we are leaving anyway
    }
    ndc.cleanup(); // its native threads would otherwise keep the process alive
    process.exitCode = code;
    process.disconnect?.();
  }
  function report(data) {
    const ru = process.resourceUsage();
    send({
      result: {
        ...data,
        cpu_whole_s: (ru.userCPUTime + ru.systemCPUTime) / 1e6,
        peak_rss_bytes: ru.maxRSS * 1024,
        pid: process.pid,
        node_datachannel: version,
      },
    });
  }
  function connect(name) {
    pc = new ndc.PeerConnection(name, config);
    pc.onLocalDescription((sdp, type) => send({ description: { sdp, type } }));
    pc.onLocalCandidate((candidate, mid) => send({ candidate: { candidate, mid } }));
    pc.onStateChange((state) => {
      if (state === 'failed') fail(new Error(`${name}: connection failed`));
    });
    process.on('message', (msg) => {
      if (msg.description) pc.setRemoteDescription(msg.description.sdp, msg.description.type);
      if (msg.candidate) pc.addRemoteCandidate(msg.candidate.candidate, msg.candidate.mid);
    });
  }

  process.on('uncaughtException', fail);
  // The coordinator died (killed on a timeout): nobody will read a result, leave now.
  process.on('disconnect', () => {
    if (!finished) process.exit(1);
  });
  if (opts.role === 'sender') {
    const payload = randomBytes(opts.msgSize);
    process.once('message', (msg) => {
      if (msg !== 'go') return fail(new Error(`unexpected ${JSON.stringify(msg)}`));
      const t0 = performance.now();
      connect('sender');
      const dc = pc.createDataChannel('bench');
      const setupTimer = setTimeout(() => fail(new Error('channel did not open')),
        SETUP_TIMEOUT_MS);
      let sent = 0;
      let tFirst = 0;
      let cpu0 = null;
      let pumping = false;
      const pump = () => {
        if (pumping) return;
        pumping = true;
        try {
          while (sent < opts.size) {
            const n = Math.min(opts.msgSize, opts.size - sent);
            dc.sendMessageBinary(n === opts.msgSize ? payload : payload.subarray(0, n));
            sent += n;
            if (dc.bufferedAmount() > HIGH_WATER) break; // resumed by bufferedamountlow
          }
        } finally {
          pumping = false;
        }
      };
      dc.setBufferedAmountLowThreshold(LOW_WATER);
      dc.onBufferedAmountLow(pump);
      dc.onMessage((msg) => {
        if (msg !== ACK) return;
        const transferS = (performance.now() - tFirst) / 1000;
        const cpu = cpuSeconds(cpu0);
        clearInterval(safety);
        report({ setup_s: setupS, transfer_s: transferS, bytes: sent, cpu_s: cpu });
        finish(0);
      });
      let setupS = 0;
      let safety = null;
      dc.onOpen(() => {
        clearTimeout(setupTimer);
        setupS = (performance.now() - t0) / 1000;
        cpu0 = process.cpuUsage();
        tFirst = performance.now();
        // A missed low-water callback must not stall the run: poll too (cheap, 20 Hz).
        safety = setInterval(() => {
          if (sent < opts.size && dc.bufferedAmount() <= LOW_WATER) pump();
        }, 50);
        pump();
      });
    });
  } else {
    connect('receiver');
    let bytes = 0;
    let cpu0 = null;
    pc.onDataChannel((dc) => {
      dc.onMessage((msg) => {
        if (cpu0 === null) cpu0 = process.cpuUsage();
        bytes += typeof msg === 'string' ? Buffer.byteLength(msg) : msg.byteLength;
        if (bytes >= opts.size && cpu0 !== undefined) {
          dc.sendMessage(ACK);
          const cpu = cpuSeconds(cpu0);
          cpu0 = undefined; // done: count no more
          report({ bytes, cpu_s: cpu });
          // Keep the connection up until the sender has the ack and closes.
          dc.onClosed(() => finish(0));
          setTimeout(() => finish(0), CLOSE_TIMEOUT_MS).unref();
        }
      });
    });
  }
  send('ready');
}

// -- coordinator ---------------------------------------------------------------------------

function coordinate(opts) {
  const script = fileURLToPath(import.meta.url);
  const common = ['--size', String(opts.size), '--msg-size', String(opts.msgSize),
    '--mtu', String(opts.mtu)];
  const kids = {};
  const results = {};
  const ready = new Set();
  let done = false;
  const stop = (code, message) => {
    if (done) return;
    done = true;
    clearTimeout(deadline);
    if (message) process.stderr.write(`ndc_channel: ${message}\n`);
    for (const k of Object.values(kids)) if (k.exitCode === null) k.kill('SIGKILL');
    process.exitCode = code;
  };
  const deadline = setTimeout(() => stop(1, `timed out after ${opts.timeout} s`),
    opts.timeout * 1000);
  for (const role of ['sender', 'receiver']) {
    const other = role === 'sender' ? 'receiver' : 'sender';
    const k = fork(script, [...common, '--role', role], { stdio: ['ignore', 'inherit',
      'inherit', 'ipc'] });
    kids[role] = k;
    k.on('message', (msg) => {
      if (msg === 'ready') {
        ready.add(role);
        if (ready.size === 2) kids.sender.send('go');
      } else if (msg.error) {
        stop(1, `${role} failed: ${msg.error}`);
      } else if (msg.result) {
        results[role] = msg.result;
      } else if (kids[other].connected) {
        kids[other].send(msg); // a description or a candidate for the other side
      }
    });
    k.on('exit', (code, sig) => {
      if (done) return;
      if (!results[role]) return stop(1, `${role} exited (${code ?? sig}) without a result`);
      if (results.sender && results.receiver && Object.values(kids).every(
        (c) => c.exitCode !== null || c.signalCode !== null)) {
        output(opts, results);
        stop(0);
      }
    });
  }
}

function output(opts, { sender: s, receiver: r }) {
  if (r.bytes !== opts.size) throw new Error(`receiver counted ${r.bytes} of ${opts.size}`);
  const side = (d) => ({
    cpu_s: d.cpu_s,
    cpu_s_per_gib: d.cpu_s / (opts.size / GIB),
    cpu_whole_s: d.cpu_whole_s,
    peak_rss_bytes: d.peak_rss_bytes,
    pid: d.pid,
  });
  process.stdout.write(JSON.stringify({
    size: opts.size,
    msg_size: opts.msgSize,
    mtu: opts.mtu || null,
    processes: 2,
    setup_s: s.setup_s,
    transfer_s: s.transfer_s,
    mb_per_s: opts.size / s.transfer_s / 1e6,
    node: process.version,
    node_datachannel: s.node_datachannel,
    sender: side(s),
    receiver: side(r),
  }) + '\n');
}

const opts = parseArgs(process.argv.slice(2));
if (opts.role) child(opts);
else coordinate(opts);
