/**
 * `npm run bench`: Corridor's full pipeline against the forwarders people would use instead, in
 * one run, on loopback, each in its own process. Method:
 * the sample upstream is pinned to CPU 0; the proxy under test and the load generator share CPU 1
 * (`taskset`, when present). Variants are interleaved across repetitions, and each repetition
 * starts one variant further along, so that neither drift nor a place in the order favours one;
 * medians with min–max are printed, every figure also as a ratio to "direct" from this run.
 * Bounded in time; stops every process it starts.
 *
 *   BENCH_SECONDS=5 BENCH_REPEAT=3 BENCH_CONNECTIONS=50 BENCH_WARMUP_REQUESTS=60000 BENCH_WARMUP=5 npm run bench
 *   BENCH_PARTS=latency,policy npm run bench      (parts: throughput, latency, policy, workers, telemetry)
 *   BENCH_ONLY=http-proxy,corridor BENCH_WORKLOADS=64 npm run bench   (name filters; direct always runs)
 *   BENCH_PARTS=telemetry BENCH_TELEMETRY_ROWS='itself,sampled 0' npm run bench   (telemetry rows whose names contain one)
 *   BENCH_BASELINE=../corridor-old npm run bench   (adds that checkout's Corridor, JWT + env credential,
 *                                                   as a row of the same run: an A/B of two revisions;
 *                                                   with the part `paired`, also measured side by side)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import autocannon from 'autocannon'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { Client } from 'undici'
import { describedFacts } from '../src/policy/described-request.ts'
import { loadBundle } from '../src/policy/bundle.ts'
import { profileShare } from './cpu-profile.ts'
import { fmt, killAll, readyUrl, stopChild, track } from './processes.ts'
import { evaluate } from '../src/policy/evaluate.ts'
import { startRedis } from '../testkit/redis-process.ts'
import { shippedNodeFlags } from '../testkit/shipped-flags.ts'
import { VaultTestServer } from '../testkit/vault-test-server.ts'
import {
  BENCH_KEY,
  JWT_AUDIENCE,
  JWT_ISSUER,
  SHIPPED_NODE_FLAGS,
  writeBenchConfig,
  type CredentialVariant,
} from './bench-config.ts'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const RULES = Number(process.env.BENCH_RULES ?? 1000)
/**
 * Small GETs each process under test serves once it has started, before anything is measured.
 * V8 keeps optimising Corridor's hot paths for tens of thousands of requests (on this VM, telemetry
 * off: about 1,100 optimising compilations in the first 50,000 small GETs, 64 in the next 50,000,
 * 16 in the 50,000 after), and it tiers code up by how often it runs, not for how long: a warm-up
 * by time gives a process that shares its CPU (the paired parts) or serves slower requests fewer
 * of them, and so measures JIT work, more of it for a setting with more code.
 */
const WARMUP_REQUESTS = Number(process.env.BENCH_WARMUP_REQUESTS ?? 60_000)
/** Then each workload's own load before it is measured, for the paths only it takes. */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP ?? 5)
/** The telemetry part's calibration: CPU spent on every request, known in advance (the part prints its share of a request). */
const KNOWN_WORK_NS = 2_500
/** Which parts to run (all by default; `paired` only with BENCH_BASELINE). */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'throughput,latency,policy,workers,telemetry,paired').split(','))
const ONLY = process.env.BENCH_ONLY?.split(',') ?? null
const WORKLOAD_FILTER = process.env.BENCH_WORKLOADS?.split(',') ?? null
/** The telemetry part's rows whose names contain one of these (all by default). */
const TELEMETRY_ROWS = process.env.BENCH_TELEMETRY_ROWS?.split(',') ?? null
const BASELINE = process.env.BENCH_BASELINE ?? null

const hasTaskset = spawnSync('taskset', ['--version']).status === 0
const nginxPath = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => spawnSync(p, ['-v']).status === 0) ?? null

interface Workload {
  name: string
  path: string
  method: 'GET' | 'POST'
  body?: Buffer
}
const post = Buffer.from(JSON.stringify({ qty: 3, pad: 'y'.repeat(4000) }))
/** The workload the paired parts compare on, whatever BENCH_WORKLOADS filters out of the tables. */
const SMALL_GET: Workload = { name: 'small GET (~200 B JSON)', path: '/small', method: 'GET' }

const WORKLOADS: Workload[] = (
  [
    SMALL_GET,
    { name: '64 KiB GET', path: '/large', method: 'GET' },
    { name: '4 KiB JSON POST (body rule)', path: '/items', method: 'POST', body: post },
    { name: 'server-sent events (10 events per response)', path: '/events', method: 'GET' },
  ] satisfies Workload[]
).filter((w) => WORKLOAD_FILTER === null || WORKLOAD_FILTER.some((f) => w.name.includes(f)))

interface Variant {
  name: string
  /** null: direct to the upstream. */
  start: (() => Promise<Running>) | null
  headers: () => Record<string, string>
  workloads: Workload[]
  vault?: VaultTestServer
}
interface Running {
  url: string
  pid: number
  stop(): Promise<void>
}
interface Cell {
  rps: number[]
  p50: number[]
  p99: number[]
  rssMiB: number
  errors: number
  vaultCallsPer1000: number[]
  /** CPU time the proxy process spent per request (user + system): its cost, less sensitive than req/s to what else the machine runs. */
  cpuMicrosPerRequest: number[]
}

function spawnPinned(cpu: number, command: string, args: string[]): ChildProcess {
  const child = hasTaskset
    ? spawn('taskset', ['-c', String(cpu), command, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  return track(child)
}

async function startTarget(
  kind: string,
  options: unknown,
  cpu: number,
  target = join(import.meta.dirname, 'target.ts'),
  nodeFlags: string[] = [],
): Promise<Running> {
  // A baseline checkout's Corridor runs with the flags that checkout ships, which an A/B may be about.
  const child = spawnPinned(cpu, process.execPath, [
    ...(kind === 'corridor' ? shippedNodeFlags(join(dirname(target), '..')) : []),
    ...nodeFlags,
    target,
    kind,
    JSON.stringify(options),
  ])
  const url = await readyUrl(child, kind)
  return { url, pid: child.pid as number, stop: () => stopChild(child) }
}

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

async function startNginx(origin: string, dir: string): Promise<Running> {
  const port = await freePort()
  const upstreamPort = new URL(origin).port
  mkdirSync(join(dir, 'nginx'), { recursive: true })
  const conf = join(dir, 'nginx', 'nginx.conf')
  writeFileSync(
    conf,
    `worker_processes 1;\ndaemon off;\npid ${dir}/nginx/nginx.pid;\nerror_log ${dir}/nginx/error.log warn;\nevents { worker_connections 1024; }\nhttp {\n  access_log off;\n  client_body_temp_path ${dir}/nginx/body; proxy_temp_path ${dir}/nginx/proxy; fastcgi_temp_path ${dir}/nginx/fcgi; uwsgi_temp_path ${dir}/nginx/uwsgi; scgi_temp_path ${dir}/nginx/scgi;\n  upstream u { server 127.0.0.1:${upstreamPort}; keepalive 64; }\n  server { listen 127.0.0.1:${port}; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } }\n}\n`,
  )
  const child = spawnPinned(1, nginxPath as string, ['-c', conf, '-p', join(dir, 'nginx')])
  const deadline = Date.now() + 5_000
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/small`)
      break
    } catch {
      if (Date.now() > deadline) throw new Error('nginx did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  // nginx forks a worker: RSS is sampled from the master's pid (the worker is what does the work; both are small).
  return { url: `http://127.0.0.1:${port}`, pid: child.pid as number, stop: () => stopChild(child) }
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

/** Clock ticks per second of /proc/<pid>/stat's times. */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/**
 * CPU seconds (user + system) a process has used so far, all its threads; with `mainThread`, its
 * main thread's alone (the event loop, without V8's garbage collection and compiler helpers). 0
 * once it is gone.
 */
function cpuSeconds(pid: number, mainThread = false): number {
  try {
    // Fields after the command name (which may hold spaces): state is the 3rd field, utime the 14th, stime the 15th.
    const stat = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
    const fields = stat.split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return 0
  }
}

/** RSS of a process and all its descendants (a supervisor and its workers). */
function treeRssMiB(pid: number): number {
  let children: number[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    // gone
  }
  return rssMiB(pid) + children.reduce((sum, child) => sum + treeRssMiB(child), 0)
}

/** `corridor serve --workers N` as an operator runs it, on both CPUs (workers need more than one). */
async function startCorridorServe(config: string, workers: number): Promise<Running> {
  const args = [
    ...SHIPPED_NODE_FLAGS,
    join(import.meta.dirname, '../bin/corridor.js'),
    'serve',
    '--config',
    config,
    '--workers',
    String(workers),
  ]
  const env = { ...process.env, BENCH_TOKEN: 'bench-secret', CORRIDOR_LOG_LEVEL: 'info' }
  const child = hasTaskset
    ? spawn('taskset', ['-c', '0,1', process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env })
    : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env })
  track(child)
  const url = await new Promise<string>((resolve, reject) => {
    // The "listening" line of the single process, or of the supervisor once every worker is up (workers' own lines carry `worker`).
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = line.startsWith('{')
        ? (JSON.parse(line) as { msg?: string; worker?: number; agentUrl?: string })
        : {}
      if (entry.msg === 'corridor listening' && entry.worker === undefined) resolve(entry.agentUrl as string)
    })
    child.once('exit', (code) =>
      reject(new Error(`corridor serve --workers ${workers} exited with ${code} before it was ready`)),
    )
  })
  return { url: `${url}/svc`, pid: child.pid as number, stop: () => stopChild(child) }
}

function load(
  url: string,
  w: Workload,
  headers: Record<string, string>,
  connections: number,
  extent: { duration: number } | { amount: number },
) {
  return autocannon({
    url: url + w.path,
    method: w.method,
    connections,
    headers: { ...headers, 'content-type': 'application/json' },
    ...(w.body ? { body: w.body } : {}),
    ...extent,
  })
}

const drive = (url: string, w: Workload, headers: Record<string, string>, seconds: number, connections: number) =>
  load(url, w, headers, connections, { duration: seconds })

/** A process just started serves WARMUP_REQUESTS small GETs (see there). */
async function warmUp(url: string, headers: Record<string, string>, connections = CONNECTIONS): Promise<void> {
  await load(url, SMALL_GET, headers, connections, { amount: WARMUP_REQUESTS })
}

/** Small GETs one after another on one kept-alive connection; returns each latency in ms, sorted. */
async function sequential(url: string, headers: Record<string, string>, seconds: number): Promise<number[]> {
  const client = new Client(new URL(url).origin, { pipelining: 1 })
  const latencies: number[] = []
  const deadline = performance.now() + seconds * 1000
  try {
    while (performance.now() < deadline) {
      const t0 = performance.now()
      const res = await client.request({
        method: 'GET',
        path: new URL(url).pathname.replace(/\/$/, '') + '/small',
        headers,
      })
      await res.body.dump()
      latencies.push(performance.now() - t0)
    }
  } finally {
    await client.close()
  }
  return latencies.sort((a, b) => a - b)
}

const percentile = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? Number.NaN
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
/** The mean and its standard error (the sample's standard deviation over √n; NaN for fewer than two). */
function meanAndError(xs: number[]): { mean: number; error: number } {
  const mean = xs.reduce((sum, x) => sum + x, 0) / xs.length
  const variance = xs.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (xs.length - 1)
  return { mean, error: Math.sqrt(variance / xs.length) }
}

async function main(): Promise<void> {
  if (hasTaskset) spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })
  const dir = mkdtempSync(join(tmpdir(), 'corridor-bench-'))
  const upstream = await startTarget('upstream', {}, 0)
  const origin = upstream.url

  // JWT identity: an ES256 key whose JWKS Corridor reads from a file; one token for the run.
  const { privateKey, publicKey } = await generateKeyPair('ES256')
  const jwksFile = join(dir, 'agents.jwks.json')
  writeFileSync(
    jwksFile,
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] }),
  )
  const jwt = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'bench' })
    .setIssuer(JWT_ISSUER)
    .setAudience(JWT_AUDIENCE)
    .setSubject('bench')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(privateKey)

  // An OTLP collector for the traces row, beside the upstream on CPU 0: it takes span batches and drops them.
  const collector = await startTarget('collector', {}, 0)

  // A Vault test server in this process (it sees a handful of calls, not the load).
  const vault = new VaultTestServer()
  await vault.start(0)
  vault.enableKv('kv')
  vault.kvPut('kv', 'bench/api', { token: 'bench-secret-from-vault' })
  vault.addDynamicRole('database', 'bench', { ttlSec: 3600, maxTtlSec: 7200, renewable: true, kind: 'database' })

  // Limits count in Redis, as across replicas: a real redis-server for the limit rows (and the same one for their baseline row).
  const limitsRedis =
    PARTS.has('throughput') &&
    spawnSync('redis-server', ['--version']).status === 0 &&
    (ONLY === null || ONLY.some((f) => f === 'corridor' || f.includes('Redis state') || 'Redis state'.includes(f)))
      ? await startRedis()
      : null
  const corridor = (
    label: string,
    credential: CredentialVariant,
    identity: 'jwt' | 'key',
    workloads: Workload[],
    target?: string,
    limits?: { redisUrl?: string; limit?: 'rate' | 'budget'; metrics?: boolean; traces?: string; sample?: number },
  ): Variant => {
    const variantDir = mkdtempSync(join(dir, 'corridor-'))
    const config = writeBenchConfig(variantDir, {
      origin,
      rules: RULES,
      credential,
      jwksFile: identity === 'jwt' ? jwksFile : null,
      vault: credential === 'env' ? null : { address: vault.address, token: vault.rootToken },
      ...(limits === undefined ? {} : limits),
    })
    return {
      name: label,
      start: () =>
        startTarget(
          'corridor',
          { config, env: { BENCH_TOKEN: 'bench-secret', BENCH_VAULT_TOKEN: vault.rootToken } },
          1,
          target,
        ),
      headers: () => ({ authorization: `Bearer ${identity === 'jwt' ? jwt : BENCH_KEY}` }),
      workloads,
      ...(credential === 'env' ? {} : { vault }),
    }
  }
  const smallOnly = WORKLOADS.slice(0, 1)
  const variants: Variant[] = [
    { name: 'direct', start: null, headers: () => ({}), workloads: WORKLOADS },
    ...(nginxPath === null
      ? []
      : [
          { name: 'nginx (1 worker)', start: () => startNginx(origin, dir), headers: () => ({}), workloads: WORKLOADS },
        ]),
    {
      name: 'undici stream',
      start: () => startTarget('undici', { origin }, 1),
      headers: () => ({}),
      workloads: WORKLOADS,
    },
    {
      name: 'http-proxy',
      start: () => startTarget('http-proxy', { origin }, 1),
      headers: () => ({}),
      workloads: WORKLOADS,
    },
    corridor('corridor (JWT, env credential)', 'env', 'jwt', WORKLOADS),
    corridor('corridor (API key, env credential)', 'env', 'key', WORKLOADS),
    corridor('corridor (API key, env credential, metrics off)', 'env', 'key', WORKLOADS.slice(0, 1), undefined, {
      metrics: false,
    }),
    corridor('corridor (API key, env credential, traces on)', 'env', 'key', WORKLOADS.slice(0, 1), undefined, {
      traces: collector.url,
    }),
    corridor('corridor (API key, env credential, traces sampled 10%)', 'env', 'key', WORKLOADS.slice(0, 1), undefined, {
      traces: collector.url,
      sample: 0.1,
    }),
    ...(limitsRedis === null
      ? []
      : (['none', 'rate', 'budget'] as const).map((limit) =>
          corridor(
            `corridor (API key, Redis state, ${limit === 'none' ? 'no limits' : `one ${limit} limit`})`,
            'env',
            'key',
            [WORKLOADS[0] as Workload, WORKLOADS[2] as Workload],
            undefined,
            { redisUrl: limitsRedis.url, ...(limit === 'none' ? {} : { limit }) },
          ),
        )),
    corridor('corridor (JWT, Vault KV)', 'vault_kv', 'jwt', smallOnly),
    corridor('corridor (JWT, Vault dynamic lease)', 'vault_dynamic', 'jwt', smallOnly),
    ...(BASELINE === null
      ? []
      : [
          corridor(
            `corridor (JWT, env credential) @ ${BASELINE}`,
            'env',
            'jwt',
            WORKLOADS,
            join(resolve(BASELINE), 'bench/target.ts'),
          ),
        ]),
  ].filter((v) => v.start === null || ONLY === null || ONLY.some((f) => v.name.includes(f)))

  const cells = new Map<string, Cell>()
  const cell = (v: string, w: string): Cell => {
    const key = `${v}\u0000${w}`
    let c = cells.get(key)
    if (c === undefined) {
      c = { rps: [], p50: [], p99: [], rssMiB: 0, errors: 0, vaultCallsPer1000: [], cpuMicrosPerRequest: [] }
      cells.set(key, c)
    }
    return c
  }

  const started = Date.now()
  process.stdout.write(
    `Corridor benchmark · ${new Date().toISOString()} · node ${process.version} · ${SECONDS}s × ${REPEAT} per cell · ${CONNECTIONS} connections · policy of ${RULES} rules · ${hasTaskset ? 'upstream on CPU 0, proxy and load generator on CPU 1' : 'taskset not found: processes not pinned'}\n`,
  )
  if (nginxPath === null)
    process.stdout.write('nginx not installed: its row is skipped (apt-get install nginx to include it)\n')

  for (let r = 0; r < (PARTS.has('throughput') ? REPEAT : 0); r++) {
    for (const v of [...variants.slice(r % variants.length), ...variants.slice(0, r % variants.length)]) {
      const running = v.start === null ? null : await v.start()
      const url = running?.url ?? origin
      const pid = running?.pid ?? upstream.pid
      try {
        if (running !== null) await warmUp(url, v.headers())
        for (const w of v.workloads) {
          await drive(url, w, v.headers(), WARMUP_SECONDS, CONNECTIONS)
          const vaultBefore = v.vault?.callCount() ?? 0
          let maxRss = 0
          const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssMiB(pid))), 200)
          const cpuBefore = cpuSeconds(pid)
          const result = await drive(url, w, v.headers(), SECONDS, CONNECTIONS)
          const cpuUsed = cpuSeconds(pid) - cpuBefore
          clearInterval(sampler)
          const c = cell(v.name, w.name)
          if (running !== null) c.cpuMicrosPerRequest.push((cpuUsed * 1e6) / Math.max(1, result.requests.total))
          c.rps.push(result.requests.average)
          c.p50.push(result.latency.p50)
          c.p99.push(result.latency.p99)
          c.rssMiB = Math.max(c.rssMiB, maxRss)
          c.errors += result.non2xx + result.errors
          if (v.vault)
            c.vaultCallsPer1000.push(((v.vault.callCount() - vaultBefore) / Math.max(1, result.requests.total)) * 1000)
        }
      } finally {
        await running?.stop()
      }
    }
    process.stdout.write(`  repetition ${r + 1}/${REPEAT} done (${Math.round((Date.now() - started) / 1000)} s)\n`)
  }

  for (const w of PARTS.has('throughput') ? WORKLOADS : []) {
    const direct = cell('direct', w.name)
    process.stdout.write(
      `\n### ${w.name}\n\n| variant | req/s median (min–max) | × direct | p50 ms* | p99 ms* | proxy CPU µs/req median (min–max) | proxy RSS max MiB |\n|---|---|---|---|---|---|---|\n`,
    )
    for (const v of variants) {
      if (!v.workloads.includes(w)) continue
      const c = cell(v.name, w.name)
      const vaultNote =
        c.vaultCallsPer1000.length > 0
          ? ` · Vault calls per 1,000 requests: ${fmt(median(c.vaultCallsPer1000), 3)}`
          : ''
      const errorNote = c.errors > 0 ? ` · ${c.errors} errors/non-2xx` : ''
      process.stdout.write(
        `| ${v.name}${vaultNote}${errorNote} | ${fmt(median(c.rps))} (${fmt(Math.min(...c.rps))}–${fmt(Math.max(...c.rps))}) | ${(median(c.rps) / median(direct.rps)).toFixed(2)} | ${fmt(median(c.p50), 2)} | ${fmt(median(c.p99), 2)} | ${c.cpuMicrosPerRequest.length === 0 ? '–' : `${fmt(median(c.cpuMicrosPerRequest), 1)} (${fmt(Math.min(...c.cpuMicrosPerRequest), 1)}–${fmt(Math.max(...c.cpuMicrosPerRequest), 1)})`} | ${v.start === null ? '–' : fmt(c.rssMiB)} |\n`,
      )
    }
  }

  process.stdout.write(
    '\n\\* autocannon reports latency in whole milliseconds under load; see the one-connection table for sub-millisecond figures.\n',
  )
  // One connection: the latency Corridor adds to a single request.
  process.stdout.write(
    `\n### One connection, small GET, requests one after another (${SECONDS}s × ${REPEAT}, timed with performance.now())\n\n| variant | p50 ms | p99 ms | added p99 over direct ms |\n|---|---|---|---|\n`,
  )
  const single = variants.filter((v) =>
    ['direct', 'http-proxy', 'corridor (JWT, env credential)', 'corridor (JWT, Vault KV)'].includes(v.name),
  )
  const singleRows: { name: string; p50: number[]; p99: number[] }[] = single.map((v) => ({
    name: v.name,
    p50: [],
    p99: [],
  }))
  for (let r = 0; r < (PARTS.has('latency') ? REPEAT : 0); r++) {
    for (const [i, v] of single.entries()) {
      const running = v.start === null ? null : await v.start()
      try {
        if (running !== null) await warmUp(running.url, v.headers())
        await sequential(running?.url ?? origin, v.headers(), WARMUP_SECONDS)
        const latencies = await sequential(running?.url ?? origin, v.headers(), SECONDS)
        singleRows[i]?.p50.push(percentile(latencies, 0.5))
        singleRows[i]?.p99.push(percentile(latencies, 0.99))
      } finally {
        await running?.stop()
      }
    }
  }
  const directP99 = median(singleRows[0]?.p99 ?? [])
  for (const row of singleRows)
    process.stdout.write(
      `| ${row.name} | ${fmt(median(row.p50), 3)} | ${fmt(median(row.p99), 3)} | ${row.name === 'direct' ? '–' : fmt(median(row.p99) - directP99, 3)} |\n`,
    )

  // Policy evaluation alone, in this process: does the cost stay flat as rules grow?
  process.stdout.write(
    `\n### Policy evaluation (one small GET's decision, in process)\n\n| rules | ns per decision | × 10 rules |\n|---|---|---|\n`,
  )
  let base = 0
  for (const n of PARTS.has('policy') ? [10, 1_000, 10_000] : []) {
    const d = mkdtempSync(join(dir, `policy-${n}-`))
    writeBenchConfig(d, { origin, rules: n, credential: 'env', jwksFile: null, vault: null })
    const bundle = loadBundle({
      agents: join(d, 'agents.yaml'),
      connectors: join(d, 'connectors.yaml'),
      policy: join(d, 'policy.yaml'),
    })
    const facts = describedFacts(bundle, { agent: 'bench', method: 'GET', url: '/svc/small?page=3' })
    const samples: number[] = []
    for (let s = 0; s < 5; s++) {
      const iterations = 200_000
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < iterations; i++) evaluate(bundle.policy, bundle.version, facts)
      samples.push(Number(process.hrtime.bigint() - t0) / iterations)
    }
    const ns = median(samples)
    if (n === 10) base = ns
    process.stdout.write(`| ${fmt(n)} | ${fmt(ns)} | ${(ns / base).toFixed(2)} |\n`)
  }
  if (PARTS.has('workers') && spawnSync('redis-server', ['--version']).status !== 0)
    process.stdout.write(
      '\nWorkers: skipped, redis-server is not installed (several workers keep approvals in Redis)\n',
    )
  else if (PARTS.has('workers')) await workersPart(origin, dir, jwt, jwksFile)
  if (PARTS.has('telemetry')) await telemetryPart(origin, dir, collector.url)
  if (PARTS.has('paired') && BASELINE !== null) await pairedBaselinePart(origin, dir, BASELINE)

  await vault.stop()
  await limitsRedis?.stop()
  await collector.stop()
  await upstream.stop()
}

/**
 * Throughput with 1 and 2 worker processes (`corridor serve --workers N`, JWT identity, approvals
 * in Redis as several workers need). Corridor may use both CPUs here, sharing them with the
 * upstream (CPU 0) and autocannon (CPU 1): compare the two rows with each other, not with the
 * pinned rows above.
 */
async function workersPart(origin: string, dir: string, jwt: string, jwksFile: string): Promise<void> {
  const redis = await startRedis()
  try {
    const config = writeBenchConfig(mkdtempSync(join(dir, 'workers-')), {
      origin,
      rules: RULES,
      credential: 'env',
      jwksFile,
      vault: null,
      redisUrl: redis.url,
    })
    const workloads = WORKLOADS.filter((w) => w.path !== '/large' && w.path !== '/events')
    const counts = [1, 2]
    const rows = new Map<string, Cell>()
    const row = (name: string, w: Workload): Cell => {
      const key = `${name}\u0000${w.name}`
      const c = rows.get(key) ?? {
        rps: [],
        p50: [],
        p99: [],
        rssMiB: 0,
        errors: 0,
        vaultCallsPer1000: [],
        cpuMicrosPerRequest: [],
      }
      rows.set(key, c)
      return c
    }
    const names = ['direct', ...counts.map((n) => `corridor (JWT), ${n} worker${n === 1 ? '' : 's'}`)]
    for (let r = 0; r < REPEAT; r++) {
      for (const [i, name] of names.entries()) {
        const n = counts[i - 1]
        const running = n === undefined ? null : await startCorridorServe(config, n)
        try {
          if (running !== null) await warmUp(running.url, { authorization: `Bearer ${jwt}` })
          for (const w of workloads) {
            const headers: Record<string, string> = running === null ? {} : { authorization: `Bearer ${jwt}` }
            await drive(running?.url ?? origin, w, headers, WARMUP_SECONDS, CONNECTIONS)
            let maxRss = 0
            const sampler = setInterval(
              () => (maxRss = running === null ? 0 : Math.max(maxRss, treeRssMiB(running.pid))),
              200,
            )
            const result = await drive(running?.url ?? origin, w, headers, SECONDS, CONNECTIONS)
            clearInterval(sampler)
            const c = row(name, w)
            c.rps.push(result.requests.average)
            c.rssMiB = Math.max(c.rssMiB, maxRss)
            c.errors += result.non2xx + result.errors
          }
        } finally {
          await running?.stop()
        }
      }
    }
    process.stdout.write(
      `\n### Workers (\`corridor serve --workers N\`, not pinned: Corridor may use both CPUs, shared with the upstream and autocannon; ${SECONDS}s × ${REPEAT})\n\n| variant | ${workloads.map((w) => `${w.name} req/s (min–max) | × 1 worker`).join(' | ')} | RSS max MiB, all processes |\n|---|${workloads.map(() => '---|---|').join('')}---|\n`,
    )
    for (const name of names) {
      const cellsOf = workloads.map((w) => row(name, w))
      const errors = cellsOf.reduce((sum, c) => sum + c.errors, 0)
      const ratios = workloads.map((w, i) => {
        const c = cellsOf[i] as Cell
        const one = row(names[1] as string, w)
        return `${fmt(median(c.rps))} (${fmt(Math.min(...c.rps))}–${fmt(Math.max(...c.rps))}) | ${name === 'direct' ? '–' : (median(c.rps) / median(one.rps)).toFixed(2)}`
      })
      process.stdout.write(
        `| ${name}${errors > 0 ? ` · ${errors} errors/non-2xx` : ''} | ${ratios.join(' | ')} | ${name === 'direct' ? '–' : fmt(Math.max(...cellsOf.map((c) => c.rssMiB)))} |\n`,
      )
    }
  } finally {
    await redis.stop()
  }
}

/**
 * CPU per request of B over A, the two running at the same time on CPU 1, each under its own load
 * (half the connections each): both see the same machine at the same moments, which separate runs
 * do not. Which starts first alternates with `round`. Also A's CPU per request, in microseconds.
 */
async function pairedCpuRatio(
  startA: () => Promise<Running>,
  startB: () => Promise<Running>,
  w: Workload,
  headers: Record<string, string>,
  round: number,
): Promise<{ ratio: number; mainThreadRatio: number; baseMicros: number }> {
  const running: Running[] = []
  try {
    if (round % 2 === 0) running.push(await startA(), await startB())
    else running.push(...[await startB(), await startA()].reverse())
    const [a, b] = running as [Running, Running]
    await Promise.all([a, b].map((p) => warmUp(p.url, headers, CONNECTIONS / 2)))
    await Promise.all([a, b].map((p) => drive(p.url, w, headers, WARMUP_SECONDS, CONNECTIONS / 2)))
    const cpu = (mainThread: boolean) => [a, b].map((p) => cpuSeconds(p.pid, mainThread))
    const [before, mainBefore] = [cpu(false), cpu(true)]
    const results = await Promise.all([a, b].map((p) => drive(p.url, w, headers, SECONDS, CONNECTIONS / 2)))
    const [after, mainAfter] = [cpu(false), cpu(true)]
    const perRequest = (to: number[], from: number[], i: number) =>
      ((to[i] as number) - (from[i] as number)) / Math.max(1, results[i]?.requests.total ?? 0)
    const [costA, costB] = [0, 1].map((i) => perRequest(after, before, i)) as [number, number]
    const [mainA, mainB] = [0, 1].map((i) => perRequest(mainAfter, mainBefore, i)) as [number, number]
    return { ratio: costB / costA, mainThreadRatio: mainB / mainA, baseMicros: costA * 1e6 }
  } finally {
    await Promise.all(running.map((p) => p.stop()))
  }
}

/**
 * This revision against BENCH_BASELINE, paired (see pairedCpuRatio): small GET, API key, env
 * credential, each revision's Corridor from its own checkout.
 */
async function pairedBaselinePart(origin: string, dir: string, baseline: string): Promise<void> {
  const config = writeBenchConfig(mkdtempSync(join(dir, 'paired-')), {
    origin,
    rules: RULES,
    credential: 'env',
    jwksFile: null,
    vault: null,
  })
  const start = (target?: string) => () =>
    startTarget('corridor', { config, env: { BENCH_TOKEN: 'bench-secret' } }, 1, target)
  const ratios: number[] = []
  for (let r = 0; r < REPEAT; r++)
    ratios.push(
      (
        await pairedCpuRatio(
          start(join(resolve(baseline), 'bench/target.ts')),
          start(),
          SMALL_GET,
          { authorization: `Bearer ${BENCH_KEY}` },
          r,
        )
      ).ratio,
    )
  const { mean, error } = meanAndError(ratios)
  process.stdout.write(
    `\n### This revision against ${baseline}, paired (small GET, API key, env credential; ${SECONDS}s × ${REPEAT})\n\nCPU per request of this revision over the baseline's, both running at once on CPU 1 (${CONNECTIONS / 2} connections each): mean ${mean.toFixed(3)}× ± ${error.toFixed(3)} (standard error; ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})\n`,
  )
}

/**
 * What telemetry costs a request, two ways, both robust to the machine's drift in a way that
 * req/s in separate runs is not:
 * - paired: Corridor with telemetry off and Corridor with a telemetry setting run at the same
 *   time, side by side on CPU 1, each under its own load; the ratio of their CPU time per request
 *   compares two processes that saw the same machine at the same moments;
 * - profiled: the telemetry setting alone under a CPU profiler, and the share of its busy samples
 *   in telemetry code (src/telemetry, prom-client, the trace context's own frames). V8 samples
 *   wall time on the main thread (time waiting for the CPU counts too), and this leaves out what
 *   telemetry costs elsewhere (garbage collection, the export's socket reads): a rough lower
 *   bound; the paired ratio has no such blind spot but more spread.
 */
async function telemetryPart(origin: string, dir: string, collectorUrl: string): Promise<void> {
  const settings: {
    name: string
    config: Partial<Parameters<typeof writeBenchConfig>[1]>
    knownWorkNs?: number
  }[] = [
    // The null test: how far apart two identical processes measure, the method's own error.
    { name: 'off (paired with itself)', config: { metrics: false } },
    // The calibration: a cost known in advance, as the method reports it.
    {
      name: `off + ${fmt(KNOWN_WORK_NS / 1000, 1)} µs of known work per request`,
      config: { metrics: false },
      knownWorkNs: KNOWN_WORK_NS,
    },
    { name: 'metrics (the default)', config: {} },
    // Trace context propagated and recorded in the audit, no span recorded: what sampling cannot save.
    {
      name: 'metrics + traces sampled 0 %, by sampling alone',
      config: { traces: collectorUrl, sample: 0, alwaysRecord: false },
    },
    // Refusals, failures and holds recorded whatever the sampling: every request gathers what its spans would need.
    {
      name: 'metrics + traces sampled 0 % (failures recorded)',
      config: { traces: collectorUrl, sample: 0, alwaysRecord: true },
    },
    { name: 'metrics + traces sampled 10%', config: { traces: collectorUrl, sample: 0.1 } },
    { name: 'metrics + traces, every request', config: { traces: collectorUrl } },
  ]
  const configFor = (extra: Partial<Parameters<typeof writeBenchConfig>[1]>): string =>
    writeBenchConfig(mkdtempSync(join(dir, 'telemetry-')), {
      origin,
      rules: RULES,
      credential: 'env',
      jwksFile: null,
      vault: null,
      ...extra,
    })
  const off = configFor({ metrics: false })
  const headers = { authorization: `Bearer ${BENCH_KEY}` }
  const start = (config: string, flags: string[] = [], knownWorkNs?: number) =>
    startTarget('corridor', { config, env: { BENCH_TOKEN: 'bench-secret' }, knownWorkNs }, 1, undefined, flags)
  const offMicros: number[] = []
  const rows = settings
    .filter((s) => TELEMETRY_ROWS === null || TELEMETRY_ROWS.some((part) => s.name.includes(part)))
    .map((s) => ({
      ...s,
      file: configFor(s.config),
      ratio: [] as number[],
      mainThread: [] as number[],
      share: [] as number[],
    }))
  for (let r = 0; r < REPEAT; r++) {
    for (const row of rows) {
      const { ratio, mainThreadRatio, baseMicros } = await pairedCpuRatio(
        () => start(off),
        () => start(row.file, [], row.knownWorkNs),
        SMALL_GET,
        headers,
        r,
      )
      row.ratio.push(ratio)
      row.mainThread.push(mainThreadRatio)
      offMicros.push(baseMicros)
      // The known work has no telemetry code to profile.
      if (row.knownWorkNs !== undefined) continue
      // Profiled: alone, as the throughput rows run.
      const profileDir = mkdtempSync(join(dir, 'profile-'))
      const profiled = await start(row.file, ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-interval', '250'])
      try {
        await warmUp(profiled.url, headers)
        await drive(profiled.url, SMALL_GET, headers, WARMUP_SECONDS, CONNECTIONS)
        await drive(profiled.url, SMALL_GET, headers, SECONDS, CONNECTIONS)
      } finally {
        await profiled.stop()
      }
      const [file] = readdirSync(profileDir)
      if (file !== undefined)
        row.share.push(
          profileShare(
            join(profileDir, file),
            {
              inclusive: /\/src\/telemetry\/|\/node_modules\/prom-client\//,
              self: /\/src\/shared\/trace-context\.ts$/,
            },
            SECONDS,
          ).share,
        )
    }
    process.stdout.write(`  telemetry repetition ${r + 1}/${REPEAT} done\n`)
  }
  const pct = (x: number) => `${fmt(x * 100, 1)} %`
  process.stdout.write(
    `\n### Telemetry cost (small GET, API key, env credential; ${SECONDS}s × ${REPEAT})\n\nPaired: CPU per request with the setting over CPU per request with telemetry off, both running at once on CPU 1 (${CONNECTIONS / 2} connections each); rounds vary by several per cent, so a difference of a few per cent needs BENCH_REPEAT of 6 or more to stand out from its standard error. Main thread: the same ratio for the main thread's CPU alone (the event loop, without V8's garbage-collection and compiler helper threads). Profiled: share of busy samples (wall time on the main thread) in telemetry code, the setting alone under \`--cpu-prof\` (a rough lower bound).\n\n| setting | paired CPU/request vs off: mean ± standard error (min–max) | main thread only: mean ± standard error | profiled share in telemetry code: median (min–max) |\n|---|---|---|---|\n`,
  )
  for (const row of rows) {
    const { mean, error } = meanAndError(row.ratio)
    const main = meanAndError(row.mainThread)
    process.stdout.write(
      `| ${row.name} | ${pct(mean - 1)} ± ${pct(error)} (${pct(Math.min(...row.ratio) - 1)} – ${pct(Math.max(...row.ratio) - 1)}) | ${pct(main.mean - 1)} ± ${pct(main.error)} | ${row.share.length === 0 ? '–' : `${pct(median(row.share))} (${pct(Math.min(...row.share))} – ${pct(Math.max(...row.share))})`} |\n`,
    )
  }
  const offMean = meanAndError(offMicros).mean
  process.stdout.write(
    `\nTelemetry off used ${fmt(offMean, 1)} µs of CPU per request in these pairs (mean), so the known work should read as about ${pct(KNOWN_WORK_NS / 1000 / offMean)}.\n`,
  )
}

process.once('SIGINT', () => {
  killAll()
  process.exit(130)
})
try {
  await main()
} finally {
  killAll()
}
