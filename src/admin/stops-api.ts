/**
 * The operators' API on the admin listener (`corridor stop | resume | stops` use it):
 *
 *   GET  /stops                         the stops in force, and whether this replica reads them fresh
 *   POST /stops                         {"scope": {...}, "mode": "stop"|"read_only", "reason": "…", "for": "2h", "dry_run": true}
 *   POST /stops/:id/resume              {"reason": "…"}
 *
 * Operators authenticate with an operator key (agents.yaml `operators:`), or with an IdP token
 * whose groups include one of `identity.approver_jwt.operator_groups`; approver and agent keys are
 * refused. A stop needs a reason; a dry run reports what the stop would take back (agents,
 * pending approvals, live leases and requests in flight on this replica) and changes nothing. The
 * replica that takes the call applies the stop before answering; every other replica within a
 * second. A stop is applied even when the audit trail cannot be written (the answer says so:
 * stopping is the safe direction); a resume is refused then, and the stop stays in force. Each stop and resume is one audit event with who, why, the scope, the stops in force
 * before and after, and what was taken back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { AuditSink } from '../audit/sink.ts'
import type { StopAuditEvent } from '../audit/record.ts'
import type { RuntimeControls } from '../controls/runtime-controls.ts'
import {
  isLive,
  overlaps,
  SCOPE_KEYS,
  scopeText,
  STOP_MODES,
  type Stop,
  type StopMode,
  type StopScope,
} from '../controls/stop.ts'
import { parseDuration } from '../config/schema-types.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { readLimited } from '../shared/read-limited.ts'
import type { Principals } from './principals.ts'
import { sendFailure, sendJson } from './respond.ts'

const MAX_BODY = 16 * 1024
const MAX_REASON = 1_000
const MAX_FOR_MS = 366 * 86_400_000
const ROUTE = /^\/stops(?:\/(stp_[A-Za-z0-9-]{1,64})\/(resume))?$/

/** What a stop takes back on the replica that applies it. */
export interface Affected {
  readonly in_flight_cut: number
  readonly approvals_cancelled: number
  readonly leases_revoked: number
  readonly agents: readonly string[]
}

/** Applies a stop's effects on this replica (or, with dryRun, only counts them). */
export type TakeBack = (stop: Stop, dryRun: boolean) => Promise<Affected>

export interface StopsApi {
  handle(req: IncomingMessage, res: ServerResponse): boolean
}

export function createStopsApi(
  controls: RuntimeControls,
  takeBack: TakeBack,
  principals: Principals,
  policies: PolicyStore,
  audit: AuditSink,
  log: Logger,
  now: () => number,
): StopsApi {
  const serve = async (req: IncomingMessage, res: ServerResponse, m: RegExpExecArray): Promise<void> => {
    const { id: by, via } = await principals.authenticate(req, 'operator')
    const [, id] = m
    if (id === undefined && req.method === 'GET') {
      const board = controls.board
      return sendJson(res, 200, {
        stops: board.live().map(stopView),
        shared: controls.shared,
        fresh: !board.stale,
        read_at: board.lastReadAt === 0 ? null : new Date(board.lastReadAt).toISOString(),
      })
    }
    if (req.method !== 'POST') throw new CorridorError('bad_request', 'stop and resume with POST, list with GET')
    const input = await readJson(req)
    const reason = reasonOf(input)
    const before = controls.board.live()
    if (id !== undefined) {
      // Refused before the store is touched while the trail cannot be written: other replicas never see it lifted.
      if (!audit.healthy)
        throw new CorridorError('audit_unavailable', 'the audit trail cannot be written, so the stop stays in force')
      const removed = await storeCall(() => controls.stops.remove(id))
      if (removed === null) throw new CorridorError('stop_not_found', `no stop '${id}' is in force`)
      const after = before.filter((s) => s.id !== id)
      // A resume gives back what a stop took: unlike a stop, it is not done unless the trail says so.
      if (!audit.writeEvent(auditEvent('resumed', removed, { by, via }, reason, before, after, null, now()))) {
        await storeCall(() => controls.stops.put(removed))
        throw new CorridorError('audit_unavailable', 'the audit trail cannot be written, so the stop stays in force')
      }
      controls.board.liftNow(id)
      log.warn({ stop: id, scope: scopeText(removed.scope), by, reason }, 'stop resumed')
      return sendJson(res, 200, { resumed: stopView(removed) })
    }
    const stop: Stop = {
      id: `stp_${randomUUID()}`,
      scope: scopeOf(input, policies),
      mode: modeOf(input),
      reason,
      by,
      via,
      since: now(),
      expiresAt: forOf(input, now()),
    }
    if (input['dry_run'] === true) {
      const affected = await takeBack(stop, true)
      return sendJson(res, 200, { dry_run: true, stop: stopView(stop), would_affect: affected })
    }
    // In force on this replica before it is even stored: the order is the operator's, not the store's.
    controls.board.applyNow(stop)
    try {
      await storeCall(() => controls.stops.put(stop))
    } catch (err) {
      controls.board.liftNow(stop.id)
      throw err
    }
    const affected = await takeBack(stop, false)
    const after = controls.board.live()
    const audited = audit.writeEvent(auditEvent('stopped', stop, { by, via }, reason, before, after, affected, now()))
    log.warn({ stop: stop.id, scope: scopeText(stop.scope), mode: stop.mode, by, reason, affected }, 'stop ordered')
    sendJson(res, 201, { stop: stopView(stop), affected, audited })
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://admin')
      const m = ROUTE.exec(url.pathname)
      if (m === null) return false
      serve(req, res, m).catch((err: unknown) => sendFailure(req, res, err, log, 'stops', ['operator_unauthenticated']))
      return true
    },
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const raw = await readLimited(req, MAX_BODY, () => new CorridorError('body_too_large', `at most ${MAX_BODY} bytes`))
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    throw new CorridorError('bad_request', 'send a JSON object')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new CorridorError('bad_request', 'send a JSON object')
  return value as Record<string, unknown>
}

function reasonOf(input: Record<string, unknown>): string {
  const reason = input['reason']
  if (typeof reason !== 'string' || reason.trim() === '')
    throw new CorridorError('bad_request', 'every stop and resume needs a reason')
  if (reason.length > MAX_REASON) throw new CorridorError('bad_request', `a reason is at most ${MAX_REASON} characters`)
  return reason.trim()
}

function scopeOf(input: Record<string, unknown>, policies: PolicyStore): StopScope {
  const given = input['scope']
  if (typeof given !== 'object' || given === null || Array.isArray(given))
    throw new CorridorError(
      'bad_request',
      'scope is an object: {} for everything, or agent, owner, connector, action, user',
    )
  const scope: Record<string, string> = {}
  for (const [key, value] of Object.entries(given)) {
    if (!(SCOPE_KEYS as readonly string[]).includes(key))
      throw new CorridorError('bad_request', `scope takes ${SCOPE_KEYS.join(', ')}; not '${key}'`)
    if (typeof value !== 'string' || value === '' || value.length > 200)
      throw new CorridorError('bad_request', `scope.${key} is a non-empty string`)
    scope[key] = value
  }
  if (scope['action'] !== undefined && scope['connector'] === undefined)
    throw new CorridorError('bad_request', 'scope.action needs scope.connector (action names are per connector)')
  // A typo must not become a stop that covers nothing while the operator believes the agent is stopped.
  const bundle = policies.current
  if (bundle !== null) {
    if (scope['agent'] !== undefined && !bundle.registry.agents.has(scope['agent']))
      throw new CorridorError('bad_request', `no agent '${scope['agent']}' is registered`)
    if (scope['owner'] !== undefined && ![...bundle.registry.agents.values()].some((a) => a.owner === scope['owner']))
      throw new CorridorError('bad_request', `no agent is owned by '${scope['owner']}'`)
    const connector = scope['connector'] === undefined ? undefined : bundle.catalog.connectors.get(scope['connector'])
    if (scope['connector'] !== undefined && connector === undefined)
      throw new CorridorError('bad_request', `no connector '${scope['connector']}'`)
    if (scope['action'] !== undefined && !connector?.actions.some((a) => a.name === scope['action']))
      throw new CorridorError(
        'bad_request',
        `connector '${scope['connector']}' declares no action '${scope['action']}'`,
      )
  }
  return scope
}

function modeOf(input: Record<string, unknown>): StopMode {
  const mode = input['mode'] ?? 'stop'
  if (typeof mode !== 'string' || !(STOP_MODES as readonly string[]).includes(mode))
    throw new CorridorError('bad_request', `mode is ${STOP_MODES.join(' or ')}`)
  return mode as StopMode
}

function forOf(input: Record<string, unknown>, now: number): number | null {
  const given = input['for']
  if (given === undefined || given === null) return null
  const ms = (typeof given === 'string' ? parseDuration(given) : undefined) ?? NaN
  if (!(ms > 0 && ms <= MAX_FOR_MS)) throw new CorridorError('bad_request', 'for is a duration such as 30m, 2h or 7d')
  return now + ms
}

async function storeCall<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op()
  } catch (err) {
    throw new CorridorError('stops_unavailable', 'the stop store could not be written; nothing changed', { cause: err })
  }
}

function stopView(stop: Stop): Record<string, unknown> {
  return {
    id: stop.id,
    scope: stop.scope,
    scope_text: scopeText(stop.scope),
    mode: stop.mode,
    reason: stop.reason,
    by: stop.by,
    via: stop.via,
    since: new Date(stop.since).toISOString(),
    expires_at: stop.expiresAt === null ? null : new Date(stop.expiresAt).toISOString(),
  }
}

function auditEvent(
  event: 'stopped' | 'resumed',
  stop: Stop,
  { by, via }: { by: string; via: string },
  reason: string,
  before: readonly Stop[],
  after: readonly Stop[],
  affected: Affected | null,
  now: number,
): StopAuditEvent {
  // The stops that overlap this scope: every one covering some request this one covers.
  const overlapping = (list: readonly Stop[]): string[] =>
    list
      .filter((s) => isLive(s, now) && overlaps(s.scope, stop.scope))
      .map((s) => `${s.id} ${scopeText(s.scope)} ${s.mode}`)
  return {
    type: 'stop',
    v: 1,
    time: new Date(now).toISOString(),
    event,
    stop_id: stop.id,
    scope: { ...stop.scope },
    mode: stop.mode,
    reason,
    stopped_by: stop.by,
    expires_at: stop.expiresAt === null ? null : new Date(stop.expiresAt).toISOString(),
    by,
    via,
    channel: 'admin_api',
    prior: overlapping(before),
    resulting: overlapping(after),
    affected,
  }
}
