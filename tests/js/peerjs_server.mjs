// The real PeerJS server (the `peer` package's PeerServer), for tests/test_peerjs.py:
// `node peerjs_server.mjs [HOST [PORT]]` (127.0.0.1 and any free port by default). Defaults
// as shipped: key "peerjs", path "/", a message to an absent id expires after 5 s, a silent
// client is dropped after 90 s. Prints {"port": N} once listening; errors on stderr.
// SIGTERM stops it.
import { PeerServer } from 'peer'

const host = process.argv[2] ?? '127.0.0.1'
const port = Number(process.argv[3] ?? 0)
const server = PeerServer({ host, port }, (http) => {
  console.log(JSON.stringify({ port: http.address().port }))
})
server.on('error', (err) => { console.error(`error: ${err.message}`) })
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
