/**
 * `npm run bench`: Corridor's full pipeline against the forwarders people would use instead, in
 * one run, on loopback. Prints one table per workload with req/s, p50/p99 latency and each figure
 * as a ratio to "direct" measured in the same run. Bounded in time; stops everything it starts.
 *
 *   BENCH_SECONDS=5 BENCH_CONNECTIONS=50 BENCH_REPEAT=3 npm run bench
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import httpProxy from 'http-proxy'
import { Pool } from 'undici'
import { loadServerConfig } from '../src/config/server-config.ts'
import { startCorridor } from '../src/main.ts'
import { createLogger } from '../src/shared/logger.ts'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3)
const RULES = Number(process.env.BENCH_RULES ?? 1000)
const KEY = 'cor_bench_agent_key'

const small = Buffer.from(JSON.stringify({ id: 1, items: Array.from({ length: 8 }, (_, i) => ({ i, name: `item-${i}` })) }))
const large = Buffer.alloc(64 * 1024, 'x')
const post = Buffer.from(JSON.stringify({ qty: 3, pad: 'y'.repeat(4000) }))

const listen = (server: Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))

async function main(): Promise<void> {
  const upstream = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(req.url?.includes('large') ? large : small)
    })
  })
  const upstreamPort = await listen(upstream)
  const origin = `http://127.0.0.1:${upstreamPort}`

  // Bare undici stream forwarder.
  const pool = new Pool(origin, { connections: 128 })
  const bareUndici = createServer((req, res) => {
    pool
      .stream({ method: req.method as 'GET', path: req.url ?? '/', headers: req.headers as Record<string, string>, body: req.method === 'GET' ? null : req }, ({ statusCode, headers }) => {
        res.writeHead(statusCode, headers as Record<string, string>)
        return res
      })
      .catch(() => res.destroy())
  })
  // Bare http-proxy forwarder with a keep-alive agent.
  const proxy = httpProxy.createProxyServer({ target: origin, agent: new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 128 }) })
  const bareHttpProxy = createServer((req, res) => proxy.web(req, res, {}, () => res.destroy()))

  const dir = mkdtempSync(join(tmpdir(), 'corridor-bench-'))
  writeFileSync(join(dir, 'agents.yaml'), `agents:\n  - { id: bench, owner: perf, tier: transactional, connectors: [svc], api_keys: [{ hash: "sha256:${createHash('sha256').update(KEY).digest('hex')}" }] }\n` +
    Array.from({ length: 50 }, (_, i) => `  - { id: other-${i}, owner: perf, tier: read-only, connectors: [svc] }\n`).join(''))
  writeFileSync(join(dir, 'connectors.yaml'), `connectors:\n  - id: svc\n    owner: perf\n    upstream: ${origin}\n    certified_until: 2099-01-01\n    credential: { source: env, env: BENCH_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }\n    actions:\n      - { name: small.get, method: GET, path: /small, risk: read }\n      - { name: large.get, method: GET, path: /large, risk: read }\n      - { name: items.create, method: POST, path: /items, risk: write }\n` +
    Array.from({ length: 100 }, (_, i) => `      - { name: filler.a${i}, method: GET, path: "/filler/${i}/{id}", risk: read }\n`).join(''))
  const filler = Array.from({ length: Math.max(0, RULES - 3) }, (_, i) => `  - { id: filler-${i}, effect: allow, match: { actions: filler.a${i % 100}, agents: [other-${i % 50}], params: { id: "${i}" } } }\n`).join('')
  writeFileSync(join(dir, 'policy.yaml'), `version: 1\nrules:\n  - { id: reads, effect: allow, match: { actions: [small.get, large.get] } }\n  - { id: create, effect: allow, match: { actions: items.create, body: { qty: { lte: 10 } } } }\n  - { id: no-big, effect: deny, match: { actions: items.create, body: { qty: { gt: 100 } } } }\n${filler}`)
  writeFileSync(join(dir, 'corridor.yaml'), `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nwatch_policy: false\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n`)
  const corridor = await startCorridor(loadServerConfig(join(dir, 'corridor.yaml')), { env: { BENCH_TOKEN: 'bench-secret' }, log: createLogger('warn') })

  const targets: [string, string][] = [
    ['direct', origin],
    ['undici stream', `http://127.0.0.1:${await listen(bareUndici)}`],
    ['http-proxy', `http://127.0.0.1:${await listen(bareHttpProxy)}`],
    ['corridor', `${corridor.agentUrl}/svc`],
  ]
  const workloads = [
    { name: 'small GET (~200 B JSON)', path: '/small', method: 'GET' as const, body: undefined },
    { name: '64 KiB GET', path: '/large', method: 'GET' as const, body: undefined },
    { name: '4 KiB JSON POST (body rule)', path: '/items', method: 'POST' as const, body: post },
  ]
  process.stdout.write(`Corridor benchmark ${new Date().toISOString()} · node ${process.version} · ${SECONDS}s × ${REPEAT} per cell · ${CONNECTIONS} connections · policy of ${RULES} rules\n`)
  for (const w of workloads) {
    const rows: { name: string; rps: number[]; p50: number[]; p99: number[] }[] = []
    for (const [name, base] of targets) {
      const row = { name, rps: [] as number[], p50: [] as number[], p99: [] as number[] }
      for (let r = 0; r < REPEAT; r++) {
        const result = await autocannon({
          url: base + w.path,
          method: w.method,
          connections: CONNECTIONS,
          duration: SECONDS,
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          ...(w.body ? { body: w.body } : {}),
        })
        if (result.non2xx > 0 || result.errors > 0) process.stdout.write(`  ! ${name}: ${result.non2xx} non-2xx, ${result.errors} errors\n`)
        row.rps.push(result.requests.average)
        row.p50.push(result.latency.p50)
        row.p99.push(result.latency.p99)
      }
      rows.push(row)
    }
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
    const direct = rows[0]!
    process.stdout.write(`\n${w.name}\n| variant | req/s median (min–max) | × direct | p50 ms | p99 ms |\n|---|---|---|---|---|\n`)
    for (const row of rows) {
      process.stdout.write(`| ${row.name} | ${Math.round(med(row.rps))} (${Math.round(Math.min(...row.rps))}–${Math.round(Math.max(...row.rps))}) | ${(med(row.rps) / med(direct.rps)).toFixed(2)} | ${med(row.p50)} | ${med(row.p99)} |\n`)
    }
  }
  process.stdout.write(`\ncorridor RSS after the run: ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB (whole bench process: all variants share it)\n`)

  await corridor.close()
  proxy.close()
  await pool.close()
  for (const s of [upstream, bareUndici, bareHttpProxy]) {
    s.closeAllConnections()
    s.close()
  }
}

await main()
