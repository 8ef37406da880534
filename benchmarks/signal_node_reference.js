// The design note's "Opción 1" signaling server, as written there, for comparison runs of
// benchmarks/signal_load.py (--server node-ref). Only changes: no express (it only wraps
// http.createServer here), any CORS origin, loopback only, the port from argv, no
// per-connection console.log (it would measure the terminal), and SIGTERM exits.
// Needs NODE_PATH=tests/js/node_modules (signal_load.py sets it).
const http = require('http');
const socketIo = require('socket.io');

const server = http.createServer();
const io = socketIo(server, { cors: { origin: '*', methods: ['GET', 'POST'] } });
const rooms = new Map(); // hash -> Set de socket IDs

io.on('connection', (socket) => {
  socket.on('announce', (data) => {
    const { hash, peerId } = data;
    if (!rooms.has(hash)) {
      rooms.set(hash, new Set());
    }
    rooms.get(hash).add(socket.id);
    socket.join(hash);
    const peers = Array.from(rooms.get(hash)).filter(id => id !== socket.id);
    socket.emit('peer-list', { peers });
    socket.to(hash).emit('new-peer', { peerId: socket.id });
  });

  for (const ev of ['offer', 'answer', 'ice-candidate']) {
    socket.on(ev, (data) => {
      socket.to(data.targetPeer).emit(ev, { ...data, fromPeer: socket.id });
    });
  }

  socket.on('disconnect', () => {
    rooms.forEach((peers, hash) => {
      if (peers.has(socket.id)) {
        peers.delete(socket.id);
        if (peers.size === 0) {
          rooms.delete(hash);
        }
      }
    });
  });
});

process.on('SIGTERM', () => process.exit(0));
server.listen(Number(process.argv[2] || 8080), '127.0.0.1');
