/**
 * The auditors' API on the admin listener:
 *
 *   GET /audit?agent=&owner=&user=&intent=&connector=&action=&decision=&outcome=&since=&until=&request_id=&approval=&limit=&after=
 *   GET /audit/trace/:request-or-approval-id
 *
 * Authenticated as an auditor (principals.ts). It reads every replica's trail from PostgreSQL when
 * `audit.postgres` is configured, this process's file otherwise. Every query is itself an audit
 * event (who, how, what was asked, how many matched), written before the answer is sent.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { PostgresAuditStore } from '../audit/postgres-store.ts'
import { queryAuditLines, type AuditFilter } from '../audit/query.ts'
import { trailLines } from '../audit/trails.ts'
import type { AuditRecord } from '../audit/record.ts'
import type { AuditSink } from '../audit/sink.ts'
import { traceOf } from '../audit/trace.ts'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { Principals } from './principals.ts'
import { sendFailure, sendJson } from './respond.ts'

const MAX_LIMIT = 1_000
const FILTERS = [
  'agent',
  'owner',
  'user',
  'intent',
  'connector',
  'action',
  'decision',
  'outcome',
  'request_id',
  'approval',
  'since',
  'until',
  'limit',
  'after',
] as const

export interface AuditApi {
  handle(req: IncomingMessage, res: ServerResponse): boolean
}

export function createAuditApi(
  principals: Principals,
  audit: AuditSink,
  source: { readonly auditFile: string; readonly store: () => PostgresAuditStore | null },
  log: Logger,
): AuditApi {
  const lines = (filter: AuditFilter): AsyncIterable<string> => {
    const store = source.store()
    return store === null ? trailLines(source.auditFile) : fromStore(store, filter)
  }
  // PostgreSQL away: a stable 503, nothing half-read; the operator gets the cause in the log.
  async function* fromStore(store: PostgresAuditStore, filter: AuditFilter): AsyncGenerator<string> {
    try {
      yield* store.lines(filter)
    } catch (err) {
      log.warn({ err }, 'the audit store could not be read')
      throw new CorridorError('audit_store_unavailable', 'the audit store cannot be read now', { cause: err })
    }
  }
  const collect = async (filter: AuditFilter): Promise<string[]> => {
    const all: string[] = []
    for await (const line of lines(filter)) all.push(line)
    return all
  }

  const serve = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const who = await principals.authenticate(req, 'auditor')
    if (req.method !== 'GET') throw new CorridorError('bad_request', 'the audit trail is read with GET')
    const asked: Record<string, string> = {}
    const record = (matched: number): void => {
      // Nothing is answered that the trail does not say was asked.
      if (
        !audit.writeEvent({
          type: 'audit_query',
          v: 1,
          time: new Date().toISOString(),
          by: who.id,
          via: who.via,
          query: asked,
          matched,
        })
      )
        throw new CorridorError('audit_unavailable', 'the audit trail cannot be written, so it is not read either')
    }
    const trace = /^\/audit\/trace\/([A-Za-z0-9_-]{1,100})$/.exec(url.pathname)
    if (trace !== null) {
      const id = trace[1] as string
      asked['trace'] = id
      const unique = await traceOf(id, collect, source.store() !== null)
      record(unique.length)
      return sendJson(res, 200, { id, steps: unique })
    }
    if (url.pathname !== '/audit') throw new CorridorError('bad_request', 'GET /audit or /audit/trace/:id')
    for (const [key, value] of url.searchParams) {
      if (!(FILTERS as readonly string[]).includes(key))
        throw new CorridorError('bad_request', `unknown filter '${key}' (${FILTERS.join(', ')})`)
      asked[key] = value
    }
    const time = (key: 'since' | 'until'): number | undefined => {
      if (asked[key] === undefined) return undefined
      const t = Date.parse(asked[key])
      if (Number.isNaN(t)) throw new CorridorError('bad_request', `${key} is an ISO time`)
      return t
    }
    const limit = asked['limit'] === undefined ? 100 : Number(asked['limit'])
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
      throw new CorridorError('bad_request', `limit is a whole number from 1 to ${MAX_LIMIT}`)
    const filter: AuditFilter = {
      agent: asked['agent'],
      owner: asked['owner'],
      user: asked['user'],
      intentContains: asked['intent'],
      connector: asked['connector'],
      action: asked['action'],
      decision: asked['decision'],
      outcome: asked['outcome'],
      requestId: asked['request_id'],
      approval: asked['approval'],
      since: time('since'),
      until: time('until'),
      // One more than asked, to know whether there is a next page; the cursor's page starts after it.
      limit: asked['after'] === undefined ? limit + 1 : undefined,
    }
    // The cursor is the last request id of the previous page: records are read in the trail's order, which does not change.
    const after = asked['after']
    let passed = after === undefined
    const records: AuditRecord[] = []
    await queryAuditLines(lines(filter), filter, (r) => {
      if (records.length > limit) return
      if (passed) records.push(r)
      else if (r.request_id === after) passed = true
    })
    const more = records.length > limit
    if (more) records.length = limit
    record(records.length)
    sendJson(res, 200, {
      source: source.store() === null ? 'file' : 'postgres',
      records,
      limit,
      more,
      next: more ? (records.at(-1)?.request_id ?? null) : null,
    })
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://admin')
      if (url.pathname !== '/audit' && !url.pathname.startsWith('/audit/')) return false
      serve(req, res, url).catch((err: unknown) =>
        sendFailure(req, res, err, log, 'audit', ['auditor_unauthenticated']),
      )
      return true
    },
  }
}
