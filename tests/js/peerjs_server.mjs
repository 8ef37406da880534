// The real PeerJS server (the `peer` package's PeerServer), for tests/test_peerjs.py.
// Defaults as shipped (key "peerjs", path "/", messages to an absent id expire after 5 s,
// a silent client is dropped after 90 s). Listens on 127.0.0.1, port argv[2] or any free
// one, and prints {"port": N} once listening; errors on stderr. SIGTERM stops it.
import { PeerServer } from 'peer'

const port = Number(process.argv[2] ?? 0)
const server = PeerServer({ host: '127.0.0.1', port }, (http) => {
  console.log(JSON.stringify({ port: http.address().port }))
})
server.on('error', (err) => { console.error(`error: ${err.message}`) })
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
