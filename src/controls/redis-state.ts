/**
 * The Redis connections runtime controls share (stops and counters): one for commands, failing
 * fast instead of queueing while Redis is away (a limit must not be counted late, a stop must not
 * be read stale), and one for pub/sub, which ioredis re-subscribes after every reconnect.
 */
import { Redis } from 'ioredis'
import type { Logger } from '../shared/logger.ts'

export interface RedisStateOptions {
  readonly url: string
  readonly keyPrefix: string
  /** Bound on every command (and on connecting). */
  readonly timeoutMs: number
}

/**
 * The two connections Corridor keeps to a Redis (approvals and runtime controls alike): commands
 * that fail now instead of queueing (a command run late after a reconnect could act on a decision
 * already refused), bounded by `timeoutMs`; and a subscriber that may queue its SUBSCRIBE until
 * connected, which ioredis repeats after every reconnect.
 */
export function redisConnections(url: string, timeoutMs: number): { commands: Redis; subscriber: Redis } {
  const connection = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    retryStrategy: (attempt: number) => Math.min(100 * attempt, 1_000),
  }
  return {
    commands: new Redis(url, connection),
    subscriber: new Redis(url, {
      ...connection,
      enableOfflineQueue: true,
      commandTimeout: undefined,
      maxRetriesPerRequest: null,
    }),
  }
}

export class RedisState {
  readonly redis: Redis
  readonly subscriber: Redis
  readonly prefix: string
  readonly timeoutMs: number

  constructor(options: RedisStateOptions, log: Logger) {
    this.prefix = options.keyPrefix
    this.timeoutMs = options.timeoutMs
    const { commands, subscriber } = redisConnections(options.url, options.timeoutMs)
    this.redis = commands
    this.subscriber = subscriber
    let down = false
    this.redis.on('error', (err: Error) => {
      if (!down)
        log.error(
          { err },
          'runtime controls: Redis unreachable; limited actions fail closed, stops are kept as last read and writes are refused once they are stale',
        )
      down = true
    })
    this.redis.on('ready', () => {
      if (down) log.warn('runtime controls: Redis reachable again')
      down = false
    })
    this.subscriber.on('error', () => {}) // reported once through the command connection
  }

  /** Waits until the command connection is ready, at most `ms`; whether it is. */
  connected(ms: number): Promise<boolean> {
    if (this.redis.status === 'ready') return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady)
        resolve(false)
      }, ms)
      const onReady = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      this.redis.once('ready', onReady)
    })
  }

  async close(): Promise<void> {
    this.subscriber.disconnect()
    await this.redis.quit().catch(() => this.redis.disconnect())
  }
}
