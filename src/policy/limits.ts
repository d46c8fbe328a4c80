/**
 * policy.yaml `limits:` → compiled limits, and for one request the counters it touches. Pure:
 * what to count and against what maximum is decided here; counting is the controls' job
 * (controls/counters.ts), in Redis across replicas or in the process.
 *
 * Windows are fixed and aligned: to the epoch for windows shorter than a day, to midnight in the
 * limit's time zone for day-long ones (a 1d budget is "per calendar day in Europe/Paris").
 */
import type { YamlReader } from '../config/yaml-reader.ts'
import type { AgentRegistry } from '../registry/agents.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import { readPath } from '../request/fields.ts'
import { compileMatch, type RuleCheck } from './match.ts'
import { fieldPath } from './conditions.ts'
import type { RequestFacts } from './facts.ts'
import { numericReadings } from './numbers.ts'
import { LIMIT_DIMENSIONS, type LimitEntry } from './policy-schema.ts'

export type LimitKind = 'rate' | 'budget' | 'concurrency' | 'identical' | 'failures'
export type LimitDimension = (typeof LIMIT_DIMENSIONS)[number]

export interface LimitWindow {
  readonly max: number
  readonly windowMs: number
  /** As written (`10/s`, `1d`), for answers and the audit trail. */
  readonly text: string
}

export interface CompiledLimit {
  readonly id: string
  readonly kind: LimitKind
  readonly shadow: boolean
  readonly onExceed: 'deny' | 'require_approval'
  readonly approvers: readonly string[]
  readonly per: readonly LimitDimension[]
  /** rate: one or more; budget and identical: one; concurrency and failures: a window of 0 (no window). */
  readonly windows: readonly LimitWindow[]
  /** budget: the body field summed, or null to count successful requests. */
  readonly sum: readonly string[] | null
  readonly timeZone: string
  readonly checks: readonly RuleCheck[]
  readonly connectors: ReadonlySet<string> | null
  readonly actions: RegExp | null
  readonly readsBody: boolean
}

/** One counter a request touches: what the controls count, atomically with the request's other counters. */
export interface CounterOp {
  readonly limit: CompiledLimit
  readonly kind: LimitKind
  /** The counter's name: limit id, window and the values of its `per` dimensions. */
  readonly key: string
  readonly max: number
  readonly windowMs: number
  /** Where windows start: 0 for the epoch, the time zone's offset for day-long windows. */
  readonly offsetMs: number
  /** What the request adds: 1, or the summed body field for a budget. */
  readonly amount: number
  readonly shadow: boolean
  readonly window: LimitWindow
}

/** What a limit did to one request, for the audit record and `policy explain`. */
export interface LimitReport {
  readonly limit: string
  readonly kind: LimitKind
  readonly window: string
  readonly max: number
  readonly used: number
  readonly remaining: number
  readonly reset_ms: number
  readonly exceeded: boolean
  readonly shadow: boolean
}

/** The rule a hold by a limit is recorded under: `limit:<id>` (the release re-check knows it by this). */
export const LIMIT_RULE_PREFIX = 'limit:'

const DAY_MS = 86_400_000

/** Compiles `limits:`; problems are recorded on the reader. */
export function compileLimits(
  r: YamlReader,
  entries: readonly (readonly [LimitEntry, number])[],
  registry: AgentRegistry,
  catalog: ConnectorCatalog,
): CompiledLimit[] {
  const ids = new Set<string>()
  const limits: CompiledLimit[] = []
  for (const [f, i] of entries) {
    const at = ['limits', i] as const
    const where = `limits[${i}]`
    if (ids.has(f.id)) r.issueAt([...at, 'id'], `duplicate limit id '${f.id}'`)
    ids.add(f.id)
    const kinds = (['rate', 'budget', 'concurrency', 'identical', 'failures'] as const).filter(
      (k) => f[k] !== undefined,
    )
    if (kinds.length !== 1) {
      r.issueAt(at, `${where}: give exactly one of rate, budget, concurrency, identical or failures`)
      continue
    }
    const kind = kinds[0] as LimitKind
    const onExceed = f.on_exceed ?? 'deny'
    const approvers = f.approvers ?? []
    if (onExceed === 'require_approval' && approvers.length === 0)
      r.issueAt(at, `${where}: on_exceed: require_approval needs 'approvers' (the approver groups)`)
    if (onExceed !== 'require_approval' && f.approvers !== undefined)
      r.issueAt([...at, 'approvers'], `${where}: 'approvers' applies only to on_exceed: require_approval`)
    if (onExceed === 'require_approval' && (kind === 'concurrency' || kind === 'rate'))
      r.issueAt(
        [...at, 'on_exceed'],
        `${where}: a ${kind} limit can only deny (waiting for a person would not slow anyone down)`,
      )
    const timeZone = f.timezone ?? 'UTC'
    try {
      new Intl.DateTimeFormat('en-US', { timeZone })
    } catch {
      r.issueAt([...at, 'timezone'], `${where}.timezone: unknown time zone '${timeZone}'`)
    }
    let windows: LimitWindow[] = []
    let sum: readonly string[] | null = null
    if (f.rate !== undefined)
      windows = (Array.isArray(f.rate) ? f.rate : [f.rate]).map((w) => ({
        max: w.max,
        windowMs: w.windowMs,
        text: durationText(w.windowMs),
      }))
    if (f.budget !== undefined) {
      windows = [{ max: f.budget.max, windowMs: f.budget.window, text: durationText(f.budget.window) }]
      if (f.budget.sum !== undefined) {
        const path = fieldPath(f.budget.sum)
        if (typeof path === 'string') r.issueAt([...at, 'budget', 'sum'], `${where}.budget.sum: ${path}`)
        else sum = path
      }
    }
    if (f.identical !== undefined)
      windows = [{ max: f.identical.max, windowMs: f.identical.within, text: durationText(f.identical.within) }]
    if (f.concurrency !== undefined) windows = [{ max: f.concurrency, windowMs: 0, text: 'at once' }]
    if (f.failures !== undefined) windows = [{ max: f.failures.max, windowMs: 0, text: 'in a row' }]
    for (const w of windows)
      if (kind !== 'concurrency' && kind !== 'failures' && (w.windowMs < 1_000 || w.windowMs > 366 * DAY_MS))
        r.issueAt(at, `${where}: windows are from 1s to 366d`)
    const m = compileMatch(r, f.match, [...at, 'match'], `${where}.match`, registry, catalog, true)
    limits.push({
      id: f.id,
      kind,
      shadow: f.mode === 'shadow',
      onExceed,
      approvers,
      per: f.per ?? ['agent'],
      windows,
      sum,
      timeZone,
      checks: m.checks,
      connectors: m.connectors,
      actions: m.actions,
      readsBody: m.readsBody || sum !== null,
    })
  }
  return limits
}

/** The limits that could apply to an action, in file order (indexed once per policy load). */
export function limitsForAction(
  limits: readonly CompiledLimit[],
  connector: string,
  action: string | null,
): CompiledLimit[] {
  return limits.filter(
    (l) =>
      (l.connectors === null || l.connectors.has(connector)) &&
      (l.actions === null || (action !== null && l.actions.test(action))),
  )
}

/**
 * The counters this request touches. `digest` is asked for only when an identical-request guard
 * applies. Throws a message when a budget's field cannot be summed (the caller refuses the request).
 */
export function counterOps(limits: readonly CompiledLimit[], facts: RequestFacts, digest: () => string): CounterOp[] {
  const ops: CounterOp[] = []
  for (const limit of limits) {
    if (!limit.checks.every((c) => c.test(facts))) continue
    let subject = limit.per.map((d) => `${d}=${dimensionValue(d, facts)}`).join(',')
    if (limit.kind === 'identical') subject += `,digest=${digest()}`
    const amount = limit.sum === null ? 1 : summed(limit, facts)
    for (const window of limit.windows) {
      const offsetMs = window.windowMs >= DAY_MS ? zoneOffsetMs(limit.timeZone, facts.now) : 0
      ops.push({
        limit,
        kind: limit.kind,
        key: `${limit.id}|${window.windowMs}|${subject}`,
        max: window.max,
        windowMs: window.windowMs,
        offsetMs,
        amount,
        shadow: limit.shadow,
        window,
      })
    }
  }
  return ops
}

function dimensionValue(d: LimitDimension, facts: RequestFacts): string {
  switch (d) {
    case 'agent':
      return facts.agent.id
    case 'owner':
      return facts.agent.owner
    case 'user':
      return facts.user?.id ?? '-'
    case 'connector':
      return facts.connector.id
    case 'action':
      return facts.action?.name ?? '-'
  }
}

export class UnreadableAmount extends Error {
  override readonly name = 'UnreadableAmount'
}

function summed(limit: CompiledLimit, facts: RequestFacts): number {
  const field = `body.${(limit.sum as readonly string[]).join('.')}`
  const read = readPath(facts.body, limit.sum as readonly string[])
  const values = read.many ? read.values : [read.value]
  let total = 0
  for (const v of values) {
    // Where upstream stacks could read different amounts, the budget is charged the largest.
    const readings = v === undefined || v === null || typeof v === 'boolean' ? [] : numericReadings(v, field)
    const n = readings.length === 0 ? NaN : Math.max(...readings)
    if (!Number.isFinite(n) || n < 0 || readings.some((x) => x < 0))
      throw new UnreadableAmount(
        `budget '${limit.id}' sums ${field}, which this request does not carry as a non-negative number`,
      )
    total += n
  }
  return total
}

function durationText(ms: number): string {
  for (const [unit, size] of [
    ['d', DAY_MS],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`
  return `${ms}ms`
}

const offsets = new Map<string, { hour: number; offset: number }>()

/** How far ahead of UTC the zone's wall clock is at `at` (cached per zone per hour: offsets change at most hourly). */
export function zoneOffsetMs(timeZone: string, at: number): number {
  if (timeZone === 'UTC') return 0
  const hour = Math.floor(at / 3_600_000)
  const cached = offsets.get(timeZone)
  if (cached !== undefined && cached.hour === hour) return cached.offset
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(at)
  const get = (t: string): number => Number(parts.find((p) => p.type === t)?.value)
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'))
  const offset = wall - Math.floor(at / 1000) * 1000
  offsets.set(timeZone, { hour, offset })
  return offset
}
