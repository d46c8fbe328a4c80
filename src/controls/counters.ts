/**
 * Counting limits: every counter a request touches is checked and taken in one atomic step (all
 * have room, or none is taken), then settled when the request ends: a budget keeps what an
 * upstream 2xx used and gives back the rest, a concurrency slot is returned, a run of upstream
 * failures grows or ends. In Redis across replicas (redis-counters.ts), in the process otherwise
 * (this file); both follow the same rules, which a shared test suite holds them to.
 */
import type { CounterOp, LimitKind } from '../policy/limits.ts'

/** One counter, as the stores see it: a counter op of the policy without its limit (shadow: counted, never refusing). */
export type Counter = Pick<CounterOp, 'kind' | 'key' | 'max' | 'windowMs' | 'offsetMs' | 'amount' | 'shadow'>

export interface CounterResult {
  /** Whether this counter had room. */
  readonly admitted: boolean
  /** What the counter holds after the request was counted (or, when refused, what it held). */
  readonly used: number
  /** Milliseconds until its window ends (0: no window). */
  readonly resetMs: number
  /** The counter's own key, as stored, for settling the request later. */
  readonly slot: string
}

export interface Settlement {
  readonly kind: LimitKind
  readonly slot: string
  readonly amount: number
  /** For concurrency: the request holding the slot. */
  readonly member: string
}

export interface CounterStore {
  /** Checks and, when every enforced counter has room, takes them all. Throws when it cannot count. */
  take(counters: readonly Counter[], requestId: string): Promise<CounterResult[]>
  /** The request ended with this upstream status, or null when the upstream did not answer. */
  settle(settlements: readonly Settlement[], upstreamStatus: number | null): Promise<void>
  close(): Promise<void>
}

export class CountersUnavailable extends Error {
  override readonly name = 'CountersUnavailable'
}

/** How long a concurrency slot is held at most if its replica dies before returning it. */
export const SLOT_TTL_MS = 15 * 60_000
/** How long a run of failures is remembered without another answer. */
export const FAILURE_RUN_TTL_MS = 3_600_000

/** Whether a budget keeps what a request reserved: only when the upstream did it (2xx). */
export function kept(upstreamStatus: number | null): boolean {
  return upstreamStatus !== null && upstreamStatus >= 200 && upstreamStatus < 300
}

/** A window's start: aligned to the epoch, shifted by the time zone's offset for day-long windows. */
export function windowStart(now: number, windowMs: number, offsetMs: number): number {
  return Math.floor((now + offsetMs) / windowMs) * windowMs - offsetMs
}

/** Counters in this process (the embedded default: one Corridor, no Redis). */
export class MemoryCounterStore implements CounterStore {
  readonly #values = new Map<string, { value: number; expiresAt: number }>()
  readonly #slots = new Map<string, Map<string, number>>()
  readonly #now: () => number
  #taken = 0

  constructor(now: () => number) {
    this.#now = now
  }

  take(counters: readonly Counter[], requestId: string): Promise<CounterResult[]> {
    const now = this.#now()
    if (++this.#taken % 4096 === 0) for (const key of this.#values.keys()) this.#read(key, now) // drops ended windows
    const results = counters.map((c): CounterResult => {
      if (c.kind === 'concurrency') {
        const slots = this.#liveSlots(c.key, now)
        return { admitted: slots.size + 1 <= c.max, used: slots.size, resetMs: 0, slot: c.key }
      }
      if (c.kind === 'failures') {
        const used = this.#read(c.key, now)
        return { admitted: used < c.max, used, resetMs: 0, slot: c.key }
      }
      const start = windowStart(now, c.windowMs, c.offsetMs)
      const slot = `${c.key}|${start}`
      const used = this.#read(slot, now)
      return { admitted: used + c.amount <= c.max, used, resetMs: start + c.windowMs - now, slot }
    })
    if (results.some((r, i) => !r.admitted && !(counters[i] as Counter).shadow)) return Promise.resolve(results)
    return Promise.resolve(
      results.map((r, i) => {
        const c = counters[i] as Counter
        if (c.kind === 'failures') return r
        if (c.kind === 'concurrency') {
          this.#liveSlots(r.slot, now).set(requestId, now + SLOT_TTL_MS)
          return { ...r, used: r.used + 1 }
        }
        const used = r.used + c.amount
        this.#values.set(r.slot, { value: used, expiresAt: now + r.resetMs + 60_000 })
        return { ...r, used }
      }),
    )
  }

  settle(settlements: readonly Settlement[], upstreamStatus: number | null): Promise<void> {
    const now = this.#now()
    for (const s of settlements) {
      if (s.kind === 'concurrency') this.#slots.get(s.slot)?.delete(s.member)
      else if (s.kind === 'budget' && !kept(upstreamStatus)) {
        const entry = this.#values.get(s.slot)
        if (entry !== undefined) entry.value = Math.max(0, entry.value - s.amount)
      } else if (s.kind === 'failures' && upstreamStatus !== null) {
        if (upstreamStatus < 400) this.#values.delete(s.slot)
        else this.#values.set(s.slot, { value: this.#read(s.slot, now) + 1, expiresAt: now + FAILURE_RUN_TTL_MS })
      }
    }
    return Promise.resolve()
  }

  close(): Promise<void> {
    return Promise.resolve()
  }

  #read(key: string, now: number): number {
    const entry = this.#values.get(key)
    if (entry === undefined) return 0
    if (entry.expiresAt <= now) {
      this.#values.delete(key)
      return 0
    }
    return entry.value
  }

  #liveSlots(key: string, now: number): Map<string, number> {
    let slots = this.#slots.get(key)
    if (slots === undefined) this.#slots.set(key, (slots = new Map()))
    for (const [member, expiresAt] of slots) if (expiresAt <= now) slots.delete(member)
    return slots
  }
}
