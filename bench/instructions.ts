/**
 * `npm run bench:instructions`: what telemetry costs a request, counted in machine instructions
 * instead of timed, and where the instructions go. Each setting's Corridor (small GET, API key,
 * env credential, the flags `npm start` uses, plus `--trace-gc-nvp`) runs under Valgrind's
 * callgrind: after a warm-up of WARMUP requests its counters are reset, it serves REQUESTS more,
 * and the counters are dumped; the dump is read here as instructions per request, split into V8's
 * major garbage collections (marking and sweeping), its scavenges, and the rest. Two settings run
 * at a time (callgrind runs one thread at a time), "off" twice, as the method's own error.
 *
 * The machine's other load does not move a count, but V8 left to itself does: which functions it
 * optimises, and when, depends on its background compiler threads, and its collectors mark and
 * sweep concurrently, so two counts of one build run side by side (telemetry off, 20,000 requests
 * each) differed by 4.9 %. Corridor therefore runs with V8's `--predictable` (one thread: no
 * concurrent compilation, marking or sweeping), in which two such counts differed by 0.1 % (up to
 * 0.9 % in a run whose windows held major collections differently: the write barrier while
 * marking and allocation move with them). That mode is not production's, but the same for every setting. Separate runs still differ (telemetry
 * off, same flags: 4.9 % apart outside major collections), and a window holds one major collection
 * more or less: compare only settings counted side by side in one run. BENCH_INSTR_NODE_FLAGS
 * replaces `--predictable` ('' for none). With BENCH_INSTR_KEEP the dumps can be read function by
 * function.
 *
 * What a count leaves out: the kernel's work (system calls, loopback TCP), cache misses and
 * stalls, so it is a floor for CPU time, not a measure of it. And what it overstates: under
 * callgrind a request lasts some 50 times longer, so more of what it allocates is still alive at a
 * scavenge (2.8 to 4.6 KB promoted a request, against under 1 KB for the same build timed), and
 * the collections' columns read higher than in production.
 *
 *   BENCH_INSTR_WARMUP=20000 BENCH_INSTR_REQUESTS=10000 BENCH_INSTR_REPEAT=1 BENCH_INSTR_CONNECTIONS=4 npm run bench:instructions
 *   BENCH_INSTR_SETTINGS=off,traces-0 npm run bench:instructions   (names from the table)
 *   BENCH_INSTR_NODE_FLAGS='' npm run bench:instructions   (V8 as shipped: concurrent, counts vary by some 5 %)
 *   BENCH_INSTR_KEEP=/tmp/counts npm run bench:instructions   (keeps each dump there, and runs
 *       Corridor with --perf-basic-prof: /tmp/perf-<pid>.map names its JIT-compiled functions,
 *       whose addresses the dump holds; the pid is in the dump's name)
 *
 * Under callgrind Corridor runs some 50 times slower: the defaults take about 50 minutes on two cores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { BENCH_KEY, SHIPPED_NODE_FLAGS, writeBenchConfig, type BenchConfig } from './bench-config.ts'
import { children, fmt, killAll, readyUrl, stopChild, track } from './processes.ts'

const WARMUP = Number(process.env.BENCH_INSTR_WARMUP ?? 20_000)
const REQUESTS = Number(process.env.BENCH_INSTR_REQUESTS ?? 10_000)
const REPEAT = Number(process.env.BENCH_INSTR_REPEAT ?? 1)
/**
 * Requests in flight. What V8 promotes to the old generation per request measured about the same
 * with 4 and with 32 connections (and with 16 and 64 MiB semi-spaces), so a few suffice.
 */
const CONNECTIONS = Number(process.env.BENCH_INSTR_CONNECTIONS ?? 4)
const RULES = Number(process.env.BENCH_RULES ?? 1000)
const TARGET = join(import.meta.dirname, 'target.ts')
/** Where to keep the dumps, for reading by function; unset: deleted. */
const KEEP = process.env.BENCH_INSTR_KEEP ?? null
/** V8 flags added to the shipped ones for every setting, space-separated: by default one thread, so that counts repeat. */
const EXTRA_FLAGS = (process.env.BENCH_INSTR_NODE_FLAGS ?? '--predictable').split(' ').filter((f) => f !== '')

/**
 * Garbage collection, by the names of V8's functions in the node binary, tested in this order.
 * The scavenger's own functions first, since some share words with the major collector's
 * (`Scavenger::EvacuateObjectDefault`). Then major collections: marking (with the write barrier's
 * share of it), sweeping, and the evacuation that compacts (moving live objects, recording and
 * updating the slots that point to them); until 2026-12-02 evacuation was counted outside major
 * collections, some 10,000 instructions a request in a window that held a compacting collection.
 * Last, what else scavenges use: the remembered sets and the shared heap helpers.
 */
const SCAVENGER = /Scaveng/
const MAJOR_GC =
  /Marking|MarkCompact|Sweep|NeedsResetDueToFlushedBytecode|EvacuateVisitorBase|EvacuateNewSpace|EvacuateOldSpace|Evacuator|LiveObjectVisitor|RecordMigratedSlot|RememberedSetUpdating|PointersUpdating/
const SCAVENGE = /heap::base::|RememberedSet|SlotSet/

interface Setting {
  readonly name: string
  readonly what: string
  readonly config: (collector: string) => Partial<BenchConfig>
}

const SETTINGS: readonly Setting[] = [
  { name: 'off', what: 'telemetry off', config: () => ({ metrics: false }) },
  { name: 'metrics', what: 'metrics (the default)', config: () => ({}) },
  {
    name: 'traces-0-alone',
    what: 'metrics + traces, none sampled, recorded by sampling alone',
    config: (c) => ({ traces: c, sample: 0, alwaysRecord: false }),
  },
  {
    name: 'traces-0',
    what: 'metrics + traces, none sampled (failures recorded)',
    config: (c) => ({ traces: c, sample: 0, alwaysRecord: true }),
  },
  { name: 'traces-10', what: 'metrics + traces sampled 10 %', config: (c) => ({ traces: c, sample: 0.1 }) },
  { name: 'traces-100', what: 'metrics + traces, every request', config: (c) => ({ traces: c }) },
]

/** One setting's count, per request served in the window. */
interface Count {
  readonly total: number
  readonly majorGc: number
  readonly scavenge: number
  /** Bytes promoted to the old generation (which major collections then mark and sweep). */
  readonly promoted: number
}

/**
 * A process of bench/target.ts (optionally under valgrind), once it prints READY; `onLine` hears
 * every other line of its output. It runs in `cwd`: V8 writes its logs there under some flags.
 */
async function start(
  command: string,
  args: string[],
  onLine?: (line: string) => void,
  cwd?: string,
): Promise<{ url: string; child: ChildProcess }> {
  const child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'], cwd }))
  return { url: await readyUrl(child, args.join(' '), onLine), child }
}

/** The dump is taken by then: no shutdown to wait for. */
const stop = (child: ChildProcess): Promise<void> => stopChild(child, 0)

/** Self cost of every function in a callgrind dump (uncompressed names), summed: all, in major collections, in scavenges. */
function readCallgrind(text: string): { total: number; majorGc: number; scavenge: number } {
  let kind: 'major' | 'scavenge' | null = null
  let callCost = false
  let total = 0
  let majorGc = 0
  let scavenge = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      const fn = line.slice(3)
      kind = SCAVENGER.test(fn) ? 'scavenge' : MAJOR_GC.test(fn) ? 'major' : SCAVENGE.test(fn) ? 'scavenge' : null
      continue
    }
    if (line.startsWith('calls=')) {
      // The next cost line is what the call cost, inclusive: the callee's own lines count it already.
      callCost = true
      continue
    }
    const first = line.charCodeAt(0)
    const costLine = (first >= 0x30 && first <= 0x39) || line[0] === '+' || line[0] === '-' || line[0] === '*'
    if (!costLine) continue
    if (callCost) {
      callCost = false
      continue
    }
    const ir = Number(line.split(' ')[1] ?? 0)
    total += ir
    if (kind === 'major') majorGc += ir
    else if (kind === 'scavenge') scavenge += ir
  }
  return { total, majorGc, scavenge }
}

async function count(setting: Setting, upstream: string, collector: string, dir: string): Promise<Count> {
  const own = mkdtempSync(join(dir, `${setting.name}-`))
  const config = writeBenchConfig(own, {
    origin: upstream,
    rules: RULES,
    credential: 'env',
    jwksFile: null,
    vault: null,
    ...setting.config(collector),
  })
  const out = join(own, 'callgrind.out')
  let counting = false
  let promoted = 0
  const corridor = await start(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      '--compress-strings=no',
      process.execPath,
      ...SHIPPED_NODE_FLAGS,
      '--trace-gc-nvp',
      ...EXTRA_FLAGS,
      ...(KEEP === null ? [] : ['--perf-basic-prof']),
      TARGET,
      'corridor',
      JSON.stringify({ config, env: { BENCH_TOKEN: 'bench-secret' } }),
    ],
    (line) => {
      const bytes = counting ? /\spromoted=(\d+)/.exec(line)?.[1] : undefined
      if (bytes !== undefined) promoted += Number(bytes)
    },
    own,
  )
  try {
    const pid = String(corridor.child.pid)
    const send = (amount: number) =>
      autocannon({
        url: `${corridor.url}/small`,
        connections: CONNECTIONS,
        amount,
        timeout: 120,
        headers: { authorization: `Bearer ${BENCH_KEY}` },
      })
    const warm = await send(WARMUP)
    if (warm.non2xx > 0 || warm.errors > 0) throw new Error(`${setting.name}: the warm-up had failures`)
    spawnSync('callgrind_control', ['--zero', pid], { stdio: 'ignore' })
    counting = true
    const measured = await send(REQUESTS)
    counting = false
    if (measured.non2xx > 0 || measured.errors > 0)
      throw new Error(`${setting.name}: the measured requests had failures`)
    const served = measured.requests.total
    spawnSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' })
    // The dump is written by the process itself at its next check of the command file.
    const dump = await waitForDump(own)
    if (KEEP !== null) copyFileSync(dump, join(KEEP, `callgrind.${setting.name}.${pid}.out`))
    const { total, majorGc, scavenge } = readCallgrind(readFileSync(dump, 'utf8'))
    return {
      total: total / served,
      majorGc: majorGc / served,
      scavenge: scavenge / served,
      promoted: promoted / served,
    }
  } finally {
    await stop(corridor.child)
    rmSync(own, { recursive: true, force: true })
  }
}

async function waitForDump(dir: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const dump = readdirSync(dir).find((f) => /^callgrind\.out\.\d+$/.test(f))
    if (dump !== undefined) {
      const path = join(dir, dump)
      // Complete once its summary line is written (the last lines of a dump).
      if (/^totals: /m.test(readFileSync(path, 'utf8').slice(-4096))) return path
    }
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error('callgrind wrote no dump within 5 minutes')
}

const percent = (x: number): string => `${x >= 0 ? '+' : ''}${fmt(x * 100, 1)} %`

async function main(): Promise<void> {
  if (spawnSync('valgrind', ['--version']).status !== 0 || spawnSync('callgrind_control', ['-h']).error !== undefined) {
    process.stdout.write('valgrind is not installed (apt-get install valgrind): nothing measured\n')
    return
  }
  const only = process.env.BENCH_INSTR_SETTINGS?.split(',') ?? null
  if (KEEP !== null) mkdirSync(KEEP, { recursive: true })
  const chosen = SETTINGS.filter((s) => only === null || only.includes(s.name))
  const dir = mkdtempSync(join(tmpdir(), 'corridor-instructions-'))
  const upstream = await start(process.execPath, [TARGET, 'upstream', '{}'])
  const collector = await start(process.execPath, [TARGET, 'collector', '{}'])
  const counts = new Map<string, Count[]>(chosen.map((s) => [s.name, []]))
  try {
    // "off" twice per round: the spread of two counts of the same build is the method's own error.
    const queue = chosen.flatMap((s) => (s.name === 'off' ? [s, s] : [s]))
    for (let r = 0; r < REPEAT; r++) {
      for (let i = 0; i < queue.length; i += 2) {
        const pair = queue.slice(i, i + 2)
        const results = await Promise.all(pair.map((s) => count(s, upstream.url, collector.url, dir)))
        pair.forEach((s, j) => counts.get(s.name)?.push(results[j] as Count))
        process.stdout.write(`  ${pair.map((s) => s.name).join(' and ')} counted (round ${r + 1}/${REPEAT})\n`)
      }
    }
  } finally {
    await Promise.all([...children].map(stop))
    rmSync(dir, { recursive: true, force: true })
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
  const range = (xs: number[]): string => `${fmt(mean(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`
  const outside = (c: Count): number => c.total - c.majorGc
  const off = mean((counts.get('off') ?? []).map(outside))
  let table = `\n### Telemetry cost in instructions (small GET, API key, env credential; callgrind, ${fmt(WARMUP)} requests of warm-up, ${fmt(REQUESTS)} counted, ${CONNECTIONS} connections)\n\nInstructions per request: mean (min–max) of the counts.\n\n| setting | outside major collections | vs off | of them in scavenges | in major collections | in all | promoted, bytes per request |\n|---|---|---|---|---|---|---|\n`
  for (const s of chosen) {
    const cs = counts.get(s.name) ?? []
    const vsOff = s.name === 'off' || !(off > 0) ? '–' : percent(mean(cs.map(outside)) / off - 1)
    table += `| ${s.what} | ${range(cs.map(outside))} | ${vsOff} | ${fmt(mean(cs.map((c) => c.scavenge)))} | ${range(cs.map((c) => c.majorGc))} | ${range(cs.map((c) => c.total))} | ${fmt(mean(cs.map((c) => c.promoted)))} |\n`
  }
  process.stdout.write(table)
}

process.once('SIGINT', () => {
  killAll()
  process.exit(130)
})
await main()
