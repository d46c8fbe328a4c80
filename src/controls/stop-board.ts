/**
 * The stops in force as this replica knows them, kept current by the store's change messages
 * and a reload every second, so that checking a request costs no I/O. When the store cannot be
 * read the last known stops stay in force; once they are older than `staleAfterMs`, requests
 * that could change anything (every risk but `read`) are refused as well, rather than run on
 * stops that may have changed. A stop this replica sees for the first time is handed to the
 * listeners (abort what is in flight, revoke leases, cancel approvals), once.
 */
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { isLive, scopeText, stopFor, type Stop, type StopSubject } from './stop.ts'
import type { StopStore } from './stop-store.ts'

export interface StopBoardOptions {
  readonly store: StopStore
  readonly log: Logger
  readonly now: () => number
  /** How old the last successful read may be before writes are refused. */
  readonly staleAfterMs: number
  /** How often the stops are reloaded even without a change message. */
  readonly reloadEveryMs: number
}

export type StopListener = (stop: Stop) => void

export class StopBoard {
  readonly #o: StopBoardOptions
  #stops: readonly Stop[] = []
  #readAt = 0
  #applied = new Set<string>()
  readonly #listeners: StopListener[] = []
  #timer: NodeJS.Timeout | null = null
  #reloading: Promise<void> | null = null
  #again = false

  constructor(options: StopBoardOptions) {
    this.#o = options
    options.store.onChange(() => void this.reload())
  }

  /** Reads the stops once (Corridor does not serve before it knows them), then keeps them current. */
  async start(): Promise<void> {
    await this.reload()
    if (this.#readAt === 0)
      this.#o.log.error('runtime controls: the stops could not be read at start; writes are refused until they are')
    this.#timer = setInterval(() => void this.reload(), this.#o.reloadEveryMs)
    this.#timer.unref()
  }

  /** Called for each stop this replica sees for the first time (listeners must not throw). */
  onStop(listener: StopListener): void {
    this.#listeners.push(listener)
  }

  /** The stops in force now. */
  live(): Stop[] {
    const now = this.#o.now()
    return this.#stops.filter((s) => isLive(s, now))
  }

  get lastReadAt(): number {
    return this.#readAt
  }

  get stale(): boolean {
    return this.#o.now() - this.#readAt > this.#o.staleAfterMs
  }

  /** Throws agent_stopped when a stop covers the request, stops_unavailable for writes on stale stops. */
  check(subject: StopSubject): void {
    const now = this.#o.now()
    const stop = this.#stops.length === 0 ? null : stopFor(this.#stops, subject, now)
    if (stop !== null) throw stoppedError(stop)
    if (subject.risk !== 'read' && now - this.#readAt > this.#o.staleAfterMs)
      throw new CorridorError(
        'stops_unavailable',
        `the stops in force could not be read for ${Math.round((now - this.#readAt) / 1000)} s; only reads are served until they can`,
      )
  }

  /**
   * A stop this replica just stored: in force here at once (before any reload), and marked as
   * applied, since the caller takes back what it covers itself.
   */
  applyNow(stop: Stop): void {
    this.#applied.add(stop.id)
    this.#stops = [...this.#stops.filter((s) => s.id !== stop.id), stop]
  }

  /** A stop this replica just removed: lifted here at once. */
  liftNow(id: string): void {
    this.#stops = this.#stops.filter((s) => s.id !== id)
  }

  /** Reloads now; concurrent calls share one read, and a call during a read schedules one more. */
  reload(): Promise<void> {
    if (this.#reloading !== null) {
      this.#again = true
      return this.#reloading
    }
    this.#reloading = this.#read().finally(() => {
      this.#reloading = null
      if (this.#again) {
        this.#again = false
        void this.reload()
      }
    })
    return this.#reloading
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
  }

  async #read(): Promise<void> {
    let stops: Stop[]
    const startedAt = this.#o.now()
    try {
      stops = await this.#o.store.load()
    } catch (err) {
      this.#o.log.debug({ err }, 'runtime controls: stops not reloaded')
      return
    }
    this.#stops = stops
    this.#readAt = startedAt
    const seen = new Set<string>()
    for (const stop of stops) {
      seen.add(stop.id)
      if (this.#applied.has(stop.id) || !isLive(stop, startedAt)) continue
      this.#applied.add(stop.id)
      this.#o.log.warn(
        { stop: stop.id, scope: scopeText(stop.scope), mode: stop.mode, by: stop.by, reason: stop.reason },
        'stop in force',
      )
      for (const listener of this.#listeners) listener(stop)
    }
    // Forget resumed stops, so that a new stop reusing nothing is applied afresh.
    for (const id of this.#applied) if (!seen.has(id)) this.#applied.delete(id)
  }
}

export function stoppedError(stop: Stop): CorridorError {
  const what = stop.mode === 'read_only' ? 'only reads are allowed' : 'every request is refused'
  return new CorridorError(
    'agent_stopped',
    `stopped by ${stop.by}: ${stop.reason} (${scopeText(stop.scope)}: ${what})`,
    {
      details: {
        stop: {
          id: stop.id,
          scope: stop.scope,
          mode: stop.mode,
          reason: stop.reason,
          by: stop.by,
          since: new Date(stop.since).toISOString(),
          expires_at: stop.expiresAt === null ? null : new Date(stop.expiresAt).toISOString(),
        },
      },
    },
  )
}
