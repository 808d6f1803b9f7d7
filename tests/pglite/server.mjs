// PostgreSQL 18 in WebAssembly (PGlite) served over the PostgreSQL wire protocol on loopback,
// for pgkb's tests: one database with the pgvector extension available, one without it.
// Prints {"vector": PORT, "plain": PORT} on one line once both listen; stops when its stdin
// closes (the test process that started it went away) or on SIGTERM.
import { PGlite } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const databases = { vector: { vector }, plain: {} }
const running = []
const ports = {}
for (const [name, extensions] of Object.entries(databases)) {
  const db = await PGlite.create({ extensions })
  // PGlite is one backend: the socket server queues the clients' messages and gives an open
  // transaction's client the backend until it ends, so a small connection pool works. A client
  // silent for a minute is dropped (its transaction rolled back): a test that holds a
  // transaction while waiting on another connection fails instead of hanging.
  const server = new PGLiteSocketServer({
    db, host: '127.0.0.1', port: 0, maxConnections: 8, idleTimeout: 60_000,
  })
  server.addEventListener('listening', (event) => { ports[name] = event.detail.port })
  await server.start()
  running.push({ db, server })
}
process.stdout.write(JSON.stringify(ports) + '\n')

async function stop() {
  for (const { db, server } of running) {
    await server.stop()
    await db.close()
  }
  process.exit(0)
}
process.stdin.on('end', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
