/**
 * One benchmark process: `node bench/target.ts <kind> '<json options>'`. Prints `READY <url>` when
 * it listens and runs until SIGTERM. Kinds: upstream (the sample system of record), undici (a
 * bare undici stream forwarder), http-proxy (a bare http-proxy forwarder), corridor (the full
 * pipeline, from files written by bench-config.ts). A corridor with `knownWorkNs` spends that much
 * CPU, spinning, on every request before Corridor sees it: a cost known in advance, against which
 * the benchmark checks how its paired method reports one.
 */
import { Agent as HttpAgent, createServer, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import httpProxy from 'http-proxy'
import { Pool } from 'undici'
import { loadServerConfig } from '../src/config/server-config.ts'
import { startCorridor } from '../src/main.ts'
import { createLogger } from '../src/shared/logger.ts'

const [kind = '', rawOptions = '{}'] = process.argv.slice(2)
const options = JSON.parse(rawOptions) as {
  origin?: string
  config?: string
  env?: Record<string, string>
  knownWorkNs?: number
}

const small = Buffer.from(
  JSON.stringify({ id: 1, items: Array.from({ length: 8 }, (_, i) => ({ i, name: `item-${i}` })) }),
)
const large = Buffer.alloc(64 * 1024, 'x')
const event = `data: ${JSON.stringify({ delta: 'x'.repeat(80) })}\n\n`

const listen = (server: Server): Promise<string> =>
  new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
  )

async function start(): Promise<{ url: string; stop: () => Promise<void> }> {
  switch (kind) {
    case 'upstream': {
      const server = createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          if (req.url?.startsWith('/events')) {
            // Ten events written separately, as a streaming API would.
            res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
            for (let i = 0; i < 10; i++) res.write(event)
            res.end()
            return
          }
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(req.url?.startsWith('/large') ? large : small)
        })
      })
      server.keepAliveTimeout = 30_000
      return { url: await listen(server), stop: async () => void server.close() }
    }
    case 'collector': {
      // An OTLP collector's receiver: takes span batches and drops them.
      const server = createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('{}')
        })
      })
      return { url: await listen(server), stop: async () => void server.close() }
    }
    case 'undici': {
      const pool = new Pool(options.origin as string, { connections: 128 })
      const server = createServer((req, res) => {
        pool
          .stream(
            {
              method: req.method as 'GET',
              path: req.url ?? '/',
              headers: req.headers as Record<string, string>,
              body: req.method === 'GET' ? null : req,
            },
            ({ statusCode, headers }) => {
              res.writeHead(statusCode, headers as Record<string, string>)
              return res
            },
          )
          .catch(() => res.destroy())
      })
      return { url: await listen(server), stop: async () => void server.close() }
    }
    case 'http-proxy': {
      const proxy = httpProxy.createProxyServer({
        target: options.origin as string,
        agent: new HttpAgent({ keepAlive: true, maxSockets: 128 }),
      })
      const server = createServer((req, res) => proxy.web(req, res, {}, () => res.destroy()))
      return { url: await listen(server), stop: async () => void server.close() }
    }
    case 'corridor': {
      if (options.knownWorkNs !== undefined) addKnownWork(options.knownWorkNs / 1e6)
      const corridor = await startCorridor(loadServerConfig(options.config as string), {
        env: options.env ?? {},
        log: createLogger('warn'),
      })
      return { url: `${corridor.agentUrl}/svc`, stop: () => corridor.close() }
    }
    default:
      throw new Error(`unknown target kind '${kind}'`)
  }
}

/** Every request any HTTP server in this process receives first costs `ms` of spinning. */
function addKnownWork(ms: number): void {
  const emit = Server.prototype.emit as (this: Server, event: string | symbol, ...args: unknown[]) => boolean
  Server.prototype.emit = function (this: Server, event: string | symbol, a?: unknown, b?: unknown, c?: unknown) {
    if (event === 'request') {
      const until = performance.now() + ms
      while (performance.now() < until);
    }
    return emit.call(this, event, a, b, c)
  } as typeof Server.prototype.emit
}

const target = await start()
process.stdout.write(`READY ${target.url}\n`)
process.once('SIGTERM', () => {
  void target.stop().finally(() => process.exit(0))
})
