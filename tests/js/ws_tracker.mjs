// The real WebTorrent tracker (bittorrent-tracker's Server), WebSocket only, for
// tests/test_wstracker.py. Prints {"port": N} once listening on argv[2] (127.0.0.1) at argv[3] (any port); every warning
// (a client's bad message) on stderr.
import { Server } from 'bittorrent-tracker'

const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('error', (err) => { console.error(`error: ${err.message}`); process.exit(1) })
server.on('warning', (err) => { console.error(`warning: ${err.message}`) })
server.on('listening', () => {
  console.log(JSON.stringify({ port: server.ws.address().port }))
})
server.listen(Number(process.argv[3] || 0), process.argv[2] || '127.0.0.1')
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)))
