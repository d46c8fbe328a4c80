/**
 * Admits a request against the limits that count it (policy/limits.ts decides which, the counter
 * store counts): every counter is taken at once or none is. Over a limit, the request is refused
 * with the limit named (rate_limited with Retry-After, budget_exceeded, loop_detected) or, where
 * the limit says so, held for approval with what remains shown to the approver. Shadow limits are
 * counted and reported, never enforced. An action no limit counts costs nothing here.
 */
import type { CounterOp, LimitReport } from '../policy/limits.ts'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { CounterResult, CounterStore, Settlement } from './counters.ts'

export interface Admission {
  readonly reports: readonly LimitReport[]
  /** RateLimit-Policy / RateLimit response headers for the enforced rate limits (empty when none). */
  readonly headers: Readonly<Record<string, string>>
  /** Null when admitted; otherwise the limit that asks for approval, with the reason shown to approvers. */
  readonly hold: { readonly limit: string; readonly approvers: readonly string[]; readonly reason: string } | null
  /** Settles the counters once the request has ended (never throws; call once). */
  settle(upstreamStatus: number | null): void
}

export class Limiter {
  readonly #store: CounterStore
  readonly #log: Logger

  constructor(store: CounterStore, log: Logger) {
    this.#store = store
    this.#log = log
  }

  /** Throws the refusal of the first enforced limit exceeded, or limits_unavailable when counting fails. */
  async admit(ops: readonly CounterOp[], requestId: string): Promise<Admission> {
    let results: CounterResult[]
    try {
      results = await this.#store.take(ops, requestId)
    } catch (err) {
      this.#log.warn({ err, requestId }, 'limit counters unavailable; the request is refused')
      throw new CorridorError(
        'limits_unavailable',
        `the counters of limit '${(ops[0] as CounterOp).limit.id}' could not be reached; nothing was forwarded`,
      )
    }
    const reports = ops.map((op, i) => report(op, results[i] as CounterResult))
    const over = ops.findIndex((op, i) => !(results[i] as CounterResult).admitted && !op.shadow)
    if (over !== -1) {
      const op = ops[over] as CounterOp
      const r = reports[over] as LimitReport
      if (op.limit.onExceed === 'require_approval')
        return {
          reports,
          headers: {},
          hold: {
            limit: op.limit.id,
            approvers: op.limit.approvers,
            reason: `over ${op.kind} '${op.limit.id}': ${describeUse(op, r)}; approving lets this request exceed it`,
          },
          settle: () => {},
        }
      throw refusal(op, r)
    }
    const settlements: Settlement[] = []
    ops.forEach((op, i) => {
      if (op.kind === 'rate' || op.kind === 'identical') return
      settlements.push({
        kind: op.kind,
        slot: (results[i] as CounterResult).slot,
        amount: op.amount,
        member: requestId,
      })
    })
    let settled = settlements.length === 0
    return {
      reports,
      headers: rateLimitHeaders(ops, reports),
      hold: null,
      settle: (upstreamStatus) => {
        if (settled) return
        settled = true
        void this.#store.settle(settlements, upstreamStatus)
      },
    }
  }
}

function report(op: CounterOp, r: CounterResult): LimitReport {
  return {
    limit: op.limit.id,
    kind: op.kind,
    window: op.window.text,
    max: op.max,
    used: r.used,
    remaining: Math.max(0, op.max - r.used),
    reset_ms: r.resetMs,
    exceeded: !r.admitted,
    shadow: op.shadow,
  }
}

function describeUse(op: CounterOp, r: LimitReport): string {
  if (op.kind === 'budget')
    return `${r.used} of ${op.max} used this ${op.window.text} window, ${r.remaining} remaining, this request ${op.amount}`
  if (op.kind === 'failures') return `${r.used} upstream failures in a row (at most ${op.max})`
  if (op.kind === 'concurrency') return `${r.used} of ${op.max} requests in flight`
  return `${r.used} of ${op.max} per ${op.window.text} used`
}

function refusal(op: CounterOp, r: LimitReport): CorridorError {
  const details = { limit: r }
  const retryAfter = String(Math.max(1, Math.ceil(r.reset_ms / 1000)))
  switch (op.kind) {
    case 'rate':
    case 'concurrency':
      return new CorridorError('rate_limited', `limit '${op.limit.id}': ${describeUse(op, r)}`, {
        details,
        headers: op.kind === 'rate' ? { 'retry-after': retryAfter } : { 'retry-after': '1' },
      })
    case 'budget':
      return new CorridorError('budget_exceeded', `budget '${op.limit.id}': ${describeUse(op, r)}`, { details })
    case 'identical':
      return new CorridorError(
        'loop_detected',
        `loop guard '${op.limit.id}': the same request more than ${op.max} times within ${op.window.text}`,
        { details },
      )
    case 'failures':
      return new CorridorError('loop_detected', `loop guard '${op.limit.id}': ${describeUse(op, r)}`, { details })
  }
}

/**
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers): one item per enforced
 * rate window, `q` the quota, `w` the window in seconds, `r` what remains, `t` seconds to reset.
 */
function rateLimitHeaders(ops: readonly CounterOp[], reports: readonly LimitReport[]): Record<string, string> {
  const policies: string[] = []
  const states: string[] = []
  ops.forEach((op, i) => {
    if (op.kind !== 'rate' || op.shadow) return
    const r = reports[i] as LimitReport
    const name = `"${op.limit.id}-${op.window.text.replace(/[^A-Za-z0-9]/g, '')}"`
    policies.push(`${name};q=${op.max};w=${Math.max(1, Math.round(op.windowMs / 1000))}`)
    states.push(`${name};r=${r.remaining};t=${Math.max(0, Math.ceil(r.reset_ms / 1000))}`)
  })
  return policies.length === 0 ? {} : { 'ratelimit-policy': policies.join(', '), ratelimit: states.join(', ') }
}
