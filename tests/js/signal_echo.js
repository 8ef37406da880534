// A socket.io-client v4 peer for interop tests: joins ROOM and answers every offer.
//
//   node signal_echo.js URL ROOM MODE      MODE: websocket | polling | default
//
// Prints {"id": <its socket id>, "peers": <its peer-list>} once announced, then for each offer it receives sends
// `answer {targetPeer: <sender>, echo: <the offer as received>}`. Exits when stdin closes
// (the test is done) or after 60 s.
'use strict';
const { io } = require('socket.io-client');

const [url, room, mode] = process.argv.slice(2);
const opts = { forceNew: true, reconnection: false };
if (mode !== 'default') opts.transports = [mode];
const socket = io(url, opts);

socket.on('connect', () => socket.emit('announce', { hash: room, peerId: 'echo' }));
socket.once('peer-list', (data) => console.log(JSON.stringify({ id: socket.id, peers: data.peers })));
socket.on('offer', (data) => socket.emit('answer', { targetPeer: data.fromPeer, echo: data }));
socket.on('connect_error', (err) => {
  console.log(JSON.stringify({ error: String(err) }));
  process.exit(1);
});

function stop() {
  socket.disconnect();
  setTimeout(() => process.exit(0), 100);
}
process.stdin.on('end', stop);
process.stdin.resume();
setTimeout(stop, 60000);
