/**
 * Approvals in Redis (ioredis): shared by every replica and durable across restarts when Redis
 * runs with `appendonly yes` and `appendfsync always`. Every transition is one Lua script
 * (redis-scripts.ts). Commands fail fast instead of queueing while Redis is away, so holds and
 * decisions fail closed within the command timeout; state changes reach other replicas by
 * pub/sub (the service also polls, in case a message is lost across a reconnect).
 */
import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { redisConnections } from '../controls/redis-state.ts'
import { APPROVAL_STATES } from '../audit/record.ts'
import { ERROR_CATALOG } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { Approval, ApprovalState, ApproverDecision, ExecutionResult, HeldRequest } from './approval.ts'
import {
  ApprovalStoreUnavailable,
  type Persistence,
  type AbandonedClaim,
  type ApprovalStore,
  type CreateResult,
  type ApproverVerdict,
  type DecideResult,
  type StoreLimits,
} from './approval-store.ts'
import { ABANDON_STALE, CANCEL, CLAIM, COMPLETE, CREATE, DECIDE, EXPIRE_DUE, UNCLAIM } from './redis-scripts.ts'

export interface RedisStoreOptions {
  readonly url: string
  readonly keyPrefix: string
  /** Bound on every Redis command (and on connecting). */
  readonly timeoutMs: number
  /**
   * What to do when Redis keeps no append-only file (a restart loses every held approval): `warn`
   * (log it loudly, show it on readiness) or `refuse` (holds fail closed until it does).
   */
  readonly withoutPersistence: 'warn' | 'refuse'
}

export class RedisApprovalStore implements ApprovalStore {
  readonly durable = true
  readonly #redis: Redis
  readonly #subscriber: Redis
  readonly #limits: StoreLimits
  readonly #p: string
  readonly #channel: string
  readonly #listeners: ((id: string) => void)[] = []
  readonly #timeoutMs: number
  /** Redis's clock minus ours, measured on every connect and readiness check; deadlines are given in Redis's time. */
  #clockOffsetMs = 0
  #persistence: Persistence = 'unknown'
  readonly #withoutPersistence: 'warn' | 'refuse'
  readonly #log: Logger

  constructor(options: RedisStoreOptions, limits: StoreLimits, log: Logger) {
    this.#limits = limits
    this.#timeoutMs = options.timeoutMs
    this.#withoutPersistence = options.withoutPersistence
    this.#log = log
    this.#p = options.keyPrefix
    this.#channel = `${options.keyPrefix}events`
    const { commands, subscriber } = redisConnections(options.url, options.timeoutMs)
    this.#redis = commands
    this.#subscriber = subscriber
    let down = false
    this.#redis.on('error', (err: Error) => {
      if (!down)
        log.error(
          { err },
          'approval store: Redis unreachable; holds and approval decisions fail closed until it is back',
        )
      down = true
    })
    this.#redis.on('ready', () => {
      if (down) log.warn('approval store: Redis reachable again')
      down = false
      this.#measureClock().catch(() => {})
      this.#checkPersistence().catch(() => {})
    })
    this.#subscriber.on('error', () => {}) // reported once through the command connection
    this.#subscriber.on('message', (_channel: string, id: string) => {
      for (const listener of this.#listeners) listener(id)
    })
    void this.#subscriber.subscribe(this.#channel).catch(() => {})
  }

  get persistence(): Persistence {
    return this.#persistence
  }

  async create(held: HeldRequest, idempotencyKey: string | null): Promise<CreateResult> {
    if (this.#persistence === 'none' && this.#withoutPersistence === 'refuse')
      throw new ApprovalStoreUnavailable(
        'approval store refuses holds: Redis keeps no append-only file (appendonly no), so a restart would lose them',
      )
    const idem =
      idempotencyKey === null ? '' : createHash('sha256').update(`${held.agent}\u0000${idempotencyKey}`).digest('hex')
    const ttl = Math.max(1, held.expiresAt - Date.now() + this.#limits.keepMs)
    const reply = (await this.#run(
      CREATE,
      [
        this.#entry(held.id),
        this.#key('pending'),
        this.#agentPending(held.agent),
        this.#key(`idem:${idem}`),
        this.#same(held.agent, held.digest),
      ],
      [
        this.#notAfter(),
        held.id,
        JSON.stringify(held),
        held.digest,
        held.expiresAt,
        held.required,
        this.#limits.maxPending,
        this.#limits.maxPendingPerAgent,
        ttl,
        this.#channel,
        idem === '' ? '0' : '1',
        this.#key('a:'),
        held.agent,
        Math.max(1, held.expiresAt - Date.now()),
      ],
    )) as string[]
    this.#refuseLate(reply)
    if (reply[0] === 'exists') return { kind: 'exists', id: reply[1] as string }
    return { kind: reply[0] as 'created' | 'full' | 'agent_full' }
  }

  async get(id: string): Promise<Approval | null> {
    const fields = await this.#call(() => this.#redis.hgetall(this.#entry(id)))
    return parseEntry(fields)
  }

  async list(state: 'pending' | 'approved' | 'executing', offset: number, limit: number): Promise<Approval[]> {
    const ids = await this.#call(() => this.#redis.zrange(this.#key(state), offset, offset + limit - 1))
    if (ids.length === 0) return []
    const pipeline = this.#redis.pipeline()
    for (const id of ids) pipeline.hgetall(this.#entry(id))
    const replies = (await this.#call(() => pipeline.exec())) ?? []
    const out: Approval[] = []
    for (const [err, fields] of replies) {
      if (err) throw new ApprovalStoreUnavailable(err.message)
      const approval = parseEntry(fields as Record<string, string>)
      if (approval !== null && approval.state === state) out.push(approval)
    }
    return out
  }

  /** The state's index, which every change of state updates in the same script as the entry. */
  async count(state: 'pending' | 'approved' | 'executing'): Promise<number> {
    return this.#call(() => this.#redis.zcard(this.#key(state)))
  }

  async decide(id: string, decision: ApproverVerdict, nowMs: number): Promise<DecideResult> {
    const agent = await this.#call(() => this.#redis.hget(this.#entry(id), 'agent'))
    if (agent === null) return { kind: 'not_found' }
    const reply = (await this.#run(
      DECIDE,
      [this.#entry(id), this.#key('pending'), this.#agentPending(agent), this.#key('approved')],
      [
        id,
        decision.approve ? '1' : '0',
        JSON.stringify(decision.by),
        decision.by.approver,
        decision.digest ?? '',
        nowMs,
        this.#limits.keepMs,
        this.#channel,
      ],
    )) as string[]
    if (reply[0] === 'not_pending') return { kind: 'not_pending', state: reply[1] as ApprovalState }
    return {
      kind: reply[0] as
        'recorded' | 'approved' | 'rejected' | 'not_found' | 'expired' | 'digest_mismatch' | 'already_decided',
    }
  }

  async claim(id: string, token: string, deadlineMs: number, retrySafe: boolean): Promise<boolean> {
    const reply = await this.#run(
      CLAIM,
      [this.#entry(id), this.#key('approved'), this.#key('executing')],
      [this.#notAfter(), id, token, deadlineMs, this.#channel, retrySafe ? '1' : '0'],
    )
    this.#refuseLate(reply)
    return reply === 1
  }

  async unclaim(id: string, token: string): Promise<boolean> {
    return (
      (await this.#run(
        UNCLAIM,
        [this.#entry(id), this.#key('approved'), this.#key('executing')],
        [id, token, Date.now(), this.#channel],
      )) === 1
    )
  }

  async complete(id: string, token: string, result: ExecutionResult): Promise<boolean> {
    return (
      (await this.#run(
        COMPLETE,
        [this.#entry(id), this.#key('executing')],
        [
          id,
          token,
          JSON.stringify(result),
          this.#limits.keepMs,
          this.#channel,
          this.#key('same:'),
          this.#limits.retryWindowMs,
        ],
      )) === 1
    )
  }

  async cancel(id: string, reason: string): Promise<boolean> {
    const agent = await this.#call(() => this.#redis.hget(this.#entry(id), 'agent'))
    if (agent === null) return false
    return (
      (await this.#run(
        CANCEL,
        [this.#entry(id), this.#key('pending'), this.#agentPending(agent), this.#key('approved')],
        [id, reason, this.#limits.keepMs, this.#channel],
      )) === 1
    )
  }

  async expireDue(nowMs: number, limit: number): Promise<string[]> {
    return (await this.#run(
      EXPIRE_DUE,
      [this.#key('pending')],
      [nowMs, limit, this.#key('a:'), this.#key('pending:agent:'), this.#limits.keepMs, this.#channel],
    )) as string[]
  }

  async abandonStale(nowMs: number, limit: number): Promise<AbandonedClaim[]> {
    const flat = (await this.#run(
      ABANDON_STALE,
      [this.#key('executing'), this.#key('approved')],
      [nowMs, limit, this.#key('a:'), this.#limits.keepMs, this.#channel],
    )) as string[]
    const out: AbandonedClaim[] = []
    for (let i = 0; i < flat.length; i += 2)
      out.push({ id: flat[i] as string, outcome: flat[i + 1] as 'retry' | 'unknown' })
    return out
  }

  onChange(listener: (id: string) => void): void {
    this.#listeners.push(listener)
  }

  async ping(): Promise<void> {
    await this.#measureClock()
    await this.#checkPersistence()
  }

  /** Reads appendonly/appendfsync; a Redis that forbids CONFIG (managed services often do) reads as unknown. */
  async #checkPersistence(): Promise<void> {
    let next: Persistence
    try {
      const [, appendonly] = (await this.#redis.config('GET', 'appendonly')) as [string, string]
      const [, fsync] = (await this.#redis.config('GET', 'appendfsync')) as [string, string]
      next =
        appendonly !== 'yes' ? 'none' : fsync === 'always' ? 'always' : fsync === 'everysec' ? 'everysec' : 'no-fsync'
    } catch (err) {
      // Unreachable is the ping's to report; a refused CONFIG means the setting cannot be known.
      if (this.#redis.status !== 'ready') throw err
      next = 'unknown'
    }
    if (next !== this.#persistence && (next === 'none' || next === 'no-fsync'))
      this.#log.error(
        { persistence: next, onMissing: this.#withoutPersistence },
        next === 'none'
          ? 'APPROVALS ARE NOT DURABLE: Redis runs with appendonly no, so a Redis restart loses every held approval; set appendonly yes and appendfsync always'
          : 'approval store: Redis appends without fsync; a host crash can lose recent approvals (set appendfsync always)',
      )
    this.#persistence = next
  }

  async #measureClock(): Promise<void> {
    const before = Date.now()
    const [seconds, micros] = await this.#call(() => this.#redis.time())
    const redisMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
    this.#clockOffsetMs = redisMs - Math.round((before + Date.now()) / 2)
  }

  /** The Redis time after which a command sent now must not act: by then this caller has given up on it. */
  #notAfter(): number {
    return Date.now() + this.#clockOffsetMs + this.#timeoutMs
  }

  /** A reply of 'late' arrives only when the clocks drifted since they were measured: the command did nothing. */
  #refuseLate(reply: unknown): void {
    if (Array.isArray(reply) && reply[0] === 'late')
      throw new ApprovalStoreUnavailable('approval store answered after the deadline; nothing was done')
  }

  /** Resolves once connected, or after `timeoutMs` (Corridor then starts anyway, failing holds closed until Redis is back). */
  connected(timeoutMs: number): Promise<boolean> {
    if (this.#redis.status === 'ready') return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#redis.off('ready', onReady)
        resolve(false)
      }, timeoutMs)
      const onReady = (): void => {
        clearTimeout(timer)
        resolve(true)
      }
      this.#redis.once('ready', onReady)
    })
  }

  async close(): Promise<void> {
    this.#subscriber.disconnect()
    await this.#redis.quit().catch(() => this.#redis.disconnect())
  }

  #key(name: string): string {
    return this.#p + name
  }

  #entry(id: string): string {
    return `${this.#p}a:${id}`
  }

  #same(agent: string, digest: string): string {
    return `${this.#p}same:${agent}:${digest}`
  }

  #agentPending(agent: string): string {
    return `${this.#p}pending:agent:${agent}`
  }

  /**
   * Runs a transition script as an ioredis command: sent once, then called by its SHA (EVALSHA),
   * with ioredis falling back to sending it again after a Redis restart forgot it.
   */
  #run(script: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    let name = this.#commands.get(script)
    if (name === undefined) {
      name = `corridorTransition${this.#commands.size}`
      this.#redis.defineCommand(name, { lua: script })
      this.#commands.set(script, name)
    }
    const command = (this.#redis as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[
      name
    ] as (...a: (string | number)[]) => Promise<unknown>
    return this.#call(() => command.call(this.#redis, keys.length, ...keys, ...args))
  }

  readonly #commands = new Map<string, string>()

  async #call<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command()
    } catch (err) {
      throw new ApprovalStoreUnavailable(`approval store unavailable: ${(err as Error).message}`, { cause: err })
    }
  }
}

function parseEntry(fields: Record<string, string>): Approval | null {
  if (fields.doc === undefined || fields.state === undefined) return null
  return {
    held: JSON.parse(fields.doc) as HeldRequest,
    state: storedState(fields.state),
    approvals: JSON.parse(fields.approvals ?? '[]') as ApproverDecision[],
    rejection: fields.rejection ? (JSON.parse(fields.rejection) as ApproverDecision) : null,
    cancelReason: fields.cancel_reason ?? null,
    result: fields.result ? storedResult(JSON.parse(fields.result) as ExecutionResult) : null,
  }
}

/** A state written by another replica, maybe a newer version: one this version does not know is `unknown`. */
function storedState(state: string): ApprovalState {
  return (APPROVAL_STATES as readonly string[]).includes(state) ? (state as ApprovalState) : 'unknown'
}

/** Likewise an error code this version does not know fails as a bad upstream answer, never as a crash. */
function storedResult(result: ExecutionResult): ExecutionResult {
  const code: string | null = result.errorCode
  if (code === null || code in ERROR_CATALOG) return result
  return { ...result, errorCode: 'upstream_bad_response' }
}
