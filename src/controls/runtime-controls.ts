/**
 * Runtime controls as one unit: the stops in force (a board kept current from the store), the
 * requests in flight a stop can cut, and the limiter over the counters. Shared through Redis when
 * one is configured; otherwise stops are kept in a file and counters in the process.
 */
import type { Logger } from '../shared/logger.ts'
import { MemoryCounterStore, type CounterStore } from './counters.ts'
import { FileStopStore } from './file-stop-store.ts'
import { InFlightRequests } from './in-flight.ts'
import { Limiter } from './limiter.ts'
import { StopBoard } from './stop-board.ts'
import type { StopStore } from './stop-store.ts'

export interface ControlsOptions {
  /** Null: stops in `stopsFile`, counters in this process. */
  readonly redis: { readonly url: string; readonly keyPrefix: string; readonly timeoutMs: number } | null
  readonly stopsFile: string
  readonly staleAfterMs: number
  readonly log: Logger
  readonly now: () => number
}

export interface RuntimeControls {
  readonly stops: StopStore
  readonly board: StopBoard
  readonly inFlight: InFlightRequests
  readonly limiter: Limiter
  /** Whether stops and counters are shared with other replicas. */
  readonly shared: boolean
  close(): Promise<void>
}

/** How often every replica re-reads the stops even when no change message arrived. */
const RELOAD_EVERY_MS = 1_000

export async function openRuntimeControls(options: ControlsOptions): Promise<RuntimeControls> {
  const { log, now } = options
  let stops: StopStore
  let counters: CounterStore
  let closeState = (): Promise<void> => Promise.resolve()
  if (options.redis === null) {
    stops = new FileStopStore(options.stopsFile)
    counters = new MemoryCounterStore(now)
  } else {
    // Loaded only when configured, as for approvals.
    const [{ RedisState }, { RedisStopStore }, { RedisCounterStore }] = await Promise.all([
      import('./redis-state.ts'),
      import('./redis-stop-store.ts'),
      import('./redis-counters.ts'),
    ])
    const state = new RedisState(options.redis, log)
    await state.connected(2_000)
    stops = new RedisStopStore(state, log)
    counters = new RedisCounterStore(state, log)
    closeState = () => state.close()
  }
  const board = new StopBoard({
    store: stops,
    log,
    now,
    staleAfterMs: options.redis === null ? Number.POSITIVE_INFINITY : options.staleAfterMs,
    reloadEveryMs: RELOAD_EVERY_MS,
  })
  await board.start()
  return {
    stops,
    board,
    inFlight: new InFlightRequests(),
    limiter: new Limiter(counters, log),
    shared: options.redis !== null,
    async close() {
      board.close()
      await stops.close()
      await counters.close()
      await closeState()
    },
  }
}
