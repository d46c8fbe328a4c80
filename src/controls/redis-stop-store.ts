/**
 * Stops shared by every replica: a Redis hash (id → stop as JSON) and a marker key written with
 * every change, so that a Redis that comes back empty (restarted without its append-only file) is
 * told apart from one where every stop was resumed: then this replica writes back the stops it
 * last read rather than let the loss resume them. Changes are announced on a channel; the board
 * also reloads on a timer, in case a message is lost across a reconnect.
 */
import type { Logger } from '../shared/logger.ts'
import type { RedisState } from './redis-state.ts'
import type { Stop } from './stop.ts'
import { StopStoreUnavailable, type StopStore } from './stop-store.ts'

export class RedisStopStore implements StopStore {
  readonly #state: RedisState
  readonly #log: Logger
  readonly #hash: string
  readonly #marker: string
  readonly #channel: string
  readonly #listeners: (() => void)[] = []
  /** What this replica last read; written back if Redis loses the stops. */
  #lastRead: Stop[] | null = null

  constructor(state: RedisState, log: Logger) {
    this.#state = state
    this.#log = log
    this.#hash = `${state.prefix}stops`
    this.#marker = `${state.prefix}stops:kept`
    this.#channel = `${state.prefix}stops:changed`
    state.subscriber.on('message', (channel: string) => {
      if (channel === this.#channel) for (const listener of this.#listeners) listener()
    })
    void state.subscriber.subscribe(this.#channel).catch(() => {})
  }

  async load(): Promise<Stop[]> {
    const [entries, kept] = await this.#call(() =>
      this.#state.redis
        .multi()
        .hgetall(this.#hash)
        .exists(this.#marker)
        .exec()
        .then((replies) => {
          const [hash, marker] = replies ?? []
          if (hash === undefined || marker === undefined || hash[0] !== null || marker[0] !== null)
            throw new Error('the stops could not be read', { cause: hash?.[0] ?? marker?.[0] })
          return [hash[1] as Record<string, string>, marker[1] as number] as const
        }),
    )
    const stops = Object.values(entries).map((text) => JSON.parse(text) as Stop)
    if (kept === 0 && this.#lastRead !== null && this.#lastRead.length > 0) {
      const restore = this.#lastRead
      this.#log.error(
        { stops: restore.length },
        'runtime controls: Redis has lost the stops (restarted without its append-only file?); writing back the stops this replica last read',
      )
      for (const stop of restore) await this.put(stop)
      return restore
    }
    this.#lastRead = stops
    return stops
  }

  async put(stop: Stop): Promise<void> {
    await this.#call(() =>
      this.#state.redis
        .multi()
        .hset(this.#hash, stop.id, JSON.stringify(stop))
        .set(this.#marker, '1')
        .publish(this.#channel, stop.id)
        .exec(),
    )
  }

  async remove(id: string): Promise<Stop | null> {
    const replies = await this.#call(() =>
      this.#state.redis
        .multi()
        .hget(this.#hash, id)
        .hdel(this.#hash, id)
        .set(this.#marker, '1')
        .publish(this.#channel, id)
        .exec(),
    )
    const text = replies?.[0]?.[1]
    return typeof text === 'string' ? (JSON.parse(text) as Stop) : null
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener)
  }

  close(): Promise<void> {
    return Promise.resolve()
  }

  async #call<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op()
    } catch (err) {
      throw new StopStoreUnavailable('the stop store (Redis) did not answer', { cause: err })
    }
  }
}
