/**
 * `npm run bench:approvals`: Corridor's memory with many requests pending approval. Starts a
 * redis-server (ephemeral port, own directory) and a Corridor process, holds N requests
 * (default 10,000) through the agent listener, and reports Corridor's RSS and hold rate as the
 * queue grows to a quarter, half, all and twice N, and how long a Prometheus scrape of /metrics
 * takes at each size, for the Redis store and for the in-memory store. Stops everything it started.
 *
 *   APPROVALS_PENDING=10000 npm run bench:approvals
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Pool } from 'undici'
import { freePort, startRedis } from '../testkit/redis-process.ts'
import { SHIPPED_NODE_FLAGS } from './bench-config.ts'

const PENDING = Number(process.env.APPROVALS_PENDING ?? 10_000)
const CONCURRENCY = 32
const KEY = 'cor_bench_approvals_key_0001'
const children = new Set<ChildProcess>()

async function main(): Promise<void> {
  const rows: string[] = []
  const checkpoints = [PENDING / 4, PENDING / 2, PENDING, PENDING * 2].map(Math.round)
  for (const store of ['redis', 'memory'] as const) rows.push(await measure(store, checkpoints))
  process.stdout.write(
    `\n### Corridor RSS with requests pending approval (${new Date().toISOString().slice(0, 10)})\n\n`,
  )
  process.stdout.write(
    `| store | holds/s | after warm-up | ${checkpoints.map((c) => `${c.toLocaleString('en')} pending (RSS, holds/s up to it, /metrics scrape)`).join(' | ')} |\n|---|---|---|${checkpoints.map(() => '---|').join('')}\n`,
  )
  for (const row of rows) process.stdout.write(row + '\n')
}

async function measure(store: 'redis' | 'memory', checkpoints: number[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-bench-approvals-'))
  // The same real redis-server the tests use: its own directory, AOF with fsync on every write.
  const redis = store === 'redis' ? await startRedis() : null
  try {
    const redisUrl = redis?.url ?? ''
    const [agentPort, adminPort, upstreamPort] = [await freePort(), await freePort(), await freePort()]
    writeFileSync(
      join(dir, 'agents.yaml'),
      `agents:\n  - { id: bench, owner: bench-team, tier: transactional, connectors: [svc], api_keys: [{ hash: "sha256:${createHash('sha256').update(KEY).digest('hex')}" }] }\n`,
    )
    writeFileSync(
      join(dir, 'connectors.yaml'),
      `connectors:\n  - id: svc\n    owner: bench-team\n    upstream: http://127.0.0.1:${upstreamPort}\n    certified_until: 2099-12-31\n    credential: { source: env, env: SVC_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }\n    actions:\n      - { name: refunds.create, method: POST, path: /refunds, risk: transactional }\n`,
    )
    writeFileSync(
      join(dir, 'policy.yaml'),
      'version: 1\nrules:\n  - { id: refunds, effect: require_approval, approvers: [finance], match: { actions: refunds.create } }\n',
    )
    writeFileSync(
      join(dir, 'corridor.yaml'),
      `listen: { host: 127.0.0.1, port: ${agentPort} }\nadmin: { host: 127.0.0.1, port: ${adminPort} }\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\nwatch_policy: false\n` +
        `approvals:\n  wait: 0s\n  max_pending: ${PENDING * 3}\n  max_pending_per_agent: ${PENDING * 3}\n` +
        (store === 'redis' ? `  redis: { url: "${redisUrl}" }\n` : ''),
    )
    const corridor = await startProcess(
      process.execPath,
      [
        ...SHIPPED_NODE_FLAGS,
        '--expose-gc',
        resolve('bin/corridor.js'),
        'serve',
        '--config',
        join(dir, 'corridor.yaml'),
      ],
      'corridor listening',
      { SVC_TOKEN: 'bench', CORRIDOR_LOG_LEVEL: 'info' },
    )
    const pid = corridor.pid as number
    const pool = new Pool(`http://127.0.0.1:${agentPort}`, { connections: CONCURRENCY })
    // Every hold a different request: a repeat of the same one would join its approval, not add one.
    let sequence = 0
    const hold = async (): Promise<void> => {
      const body = JSON.stringify({
        amount: 9000,
        currency: 'eur',
        charge: 'ch_' + 'x'.repeat(24),
        reason: 'requested_by_customer',
        metadata: { order: String(sequence++), note: 'y'.repeat(200) },
      })
      const res = await pool.request({
        method: 'POST',
        path: '/svc/refunds',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body,
      })
      const text = await res.body.text()
      if (res.statusCode !== 503 || !text.includes('"code":"approval_pending"'))
        throw new Error(`hold answered ${res.statusCode}: ${text}`)
    }
    for (let i = 0; i < 200; i++) await hold() // warm up
    const before = rssMiB(pid)
    const started = performance.now()
    const samples: string[] = []
    let held = 0
    for (const target of checkpoints) {
      const from = held
      const segmentStarted = performance.now()
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (held < target) {
            held++
            await hold()
          }
        }),
      )
      // The hold rate within this segment: whether holds slow down as the queue grows.
      const segmentRate = (held - from) / ((performance.now() - segmentStarted) / 1000)
      samples.push(
        `${rssMiB(pid).toFixed(0)} MiB, ${Math.round(segmentRate).toLocaleString('en')}/s, scrape ${(await scrapeMs(adminPort)).toFixed(1)} ms`,
      )
    }
    const rate = held / ((performance.now() - started) / 1000)
    await pool.close()
    return `| ${store} | ${Math.round(rate).toLocaleString('en')} | ${before.toFixed(0)} MiB | ${samples.join(' | ')} |`
  } finally {
    for (const child of children) child.kill('SIGKILL')
    children.clear()
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The median of five scrapes of /metrics, in ms: what a Prometheus server waits for at every scrape. */
async function scrapeMs(adminPort: number): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    const started = performance.now()
    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`)
    const text = await res.text()
    if (res.status !== 200 || !text.includes('corridor_approvals_pending'))
      throw new Error(`scrape answered ${res.status}`)
    times.push(performance.now() - started)
  }
  return times.sort((a, b) => a - b)[2] as number
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : 0
}

function startProcess(
  command: string,
  args: string[],
  readyText: string,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  return new Promise((resolveStart, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`${command} did not start: ${seen}`)), 15_000)
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString()
      if (seen.includes(readyText)) {
        clearTimeout(timer)
        resolveStart(child)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => reject(new Error(`${command} exited (${code}): ${seen}`)))
  })
}

main().catch((err: unknown) => {
  for (const child of children) child.kill('SIGKILL')
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
