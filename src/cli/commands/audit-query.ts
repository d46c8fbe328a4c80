/**
 * `corridor audit query`: the records that match every filter given, one JSON line each. With
 * `audit.postgres` configured it reads the trail every replica shipped there (`--store file`: this
 * replica's local file instead); otherwise the local file.
 */
import { queryAuditLines, type AuditFilter } from '../../audit/query.ts'
import { trailLines } from '../../audit/trails.ts'
import type { AuditRecord } from '../../audit/record.ts'
import { loadServerConfig, resolveUrl, type ServerConfig } from '../../config/server-config.ts'
import type { PostgresAuditStore } from '../../audit/postgres-store.ts'
import { chainPosition, WindowCopy, windowStarts } from '../../audit/export-window.ts'
import { toOcsf } from '../../audit/ocsf.ts'
import { buildReport, reportCsv, reportMarkdown } from '../../audit/report.ts'
import { traceOf } from '../../audit/trace.ts'
import { CONFIG_OPTION, configPath, UsageError, type Command, type CommandContext } from '../command.ts'

export const auditQueryCommand: Command = {
  words: ['audit', 'query'],
  usage:
    'corridor audit query [--agent ID] [--owner TEAM] [--user ID] [--intent TEXT] [--connector ID] [--action NAME] [--decision allow|deny|require_approval] [--outcome O] [--since ISO] [--until ISO] [--request-id ID] [--approval ID] [--limit N] [--format json|csv|table] [--store file|postgres]',
  options: {
    ...CONFIG_OPTION,
    agent: { type: 'string' },
    owner: { type: 'string' },
    user: { type: 'string' },
    intent: { type: 'string' },
    format: { type: 'string' },
    connector: { type: 'string' },
    action: { type: 'string' },
    decision: { type: 'string' },
    outcome: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'request-id': { type: 'string' },
    approval: { type: 'string' },
    limit: { type: 'string' },
    store: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out, err, env }) {
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
    const limit = str(values['limit'])
    if (limit !== undefined && !/^[1-9]\d*$/.test(limit))
      throw new UsageError(`--limit takes a whole number, got '${limit}'`)
    const since = str(values['since'])
    const until = str(values['until'])
    const format = str(values['format']) ?? 'json'
    if (format !== 'json' && format !== 'csv' && format !== 'table')
      throw new UsageError(`--format is json, csv or table, got '${format}'`)
    const filter: AuditFilter = {
      agent: str(values['agent']),
      owner: str(values['owner']),
      user: str(values['user']),
      intentContains: str(values['intent']),
      connector: str(values['connector']),
      action: str(values['action']),
      decision: str(values['decision']),
      outcome: str(values['outcome']),
      requestId: str(values['request-id']),
      approval: str(values['approval']),
      since: since === undefined ? undefined : parseTime(since, '--since'),
      until: until === undefined ? undefined : parseTime(until, '--until'),
      limit: limit === undefined ? undefined : Number(limit),
    }
    const config = loadServerConfig(configPath(values))
    const store = storeOf(values, config)
    if (format !== 'json') out(format === 'csv' ? SUMMARY_COLUMNS.join(',') : SUMMARY_COLUMNS.join('\t'))
    const print = (record: AuditRecord): void =>
      out(format === 'json' ? JSON.stringify(record) : summaryRow(record, format === 'csv' ? ',' : '\t'))
    let result = { matched: 0, unreadable: 0 }
    await eachTrailLine(config, env, store, filter, async (lines) => {
      result = await queryAuditLines(lines, filter, print)
    })
    const { matched, unreadable } = result
    err(
      `${matched} record(s) from ${store === 'file' ? config.auditFile : 'PostgreSQL'}${unreadable > 0 ? `; ${unreadable} unreadable line(s) skipped` : ''}`,
    )
    return 0
  },
}

/** The columns of `--format csv|table`: one line per request, what a reviewer scans first. */
const SUMMARY_COLUMNS = [
  'time',
  'request_id',
  'agent',
  'user',
  'connector',
  'action',
  'method',
  'path',
  'decision',
  'rule',
  'outcome',
  'status',
  'error_code',
  'approval_id',
] as const

function summaryRow(r: AuditRecord, separator: ',' | '\t'): string {
  const values = [
    r.time,
    r.request_id,
    r.agent,
    r.user,
    r.connector,
    r.action,
    r.method,
    r.path,
    r.decision,
    r.rule,
    r.outcome,
    r.status,
    r.error_code,
    r.approval?.id ?? null,
  ]
  return values
    .map((v) => {
      const text = v === null ? '' : String(v)
      if (separator === '\t') return text.replace(/[\t\n\r]/g, ' ')
      return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
    })
    .join(separator)
}

/** Runs `use` with the configured PostgreSQL store, closed afterwards. */
export async function withPostgres<T>(
  config: ServerConfig,
  env: NodeJS.ProcessEnv,
  use: (store: PostgresAuditStore) => Promise<T>,
): Promise<T> {
  const pgConfig = config.auditPostgres
  if (pgConfig === null) throw new UsageError('corridor.yaml has no audit.postgres')
  // Judged as `serve` judges it: set, and not in clear beyond loopback.
  const url = resolveUrl(pgConfig.url, env)
  const { PostgresAuditStore } = await import('../../audit/postgres-store.ts')
  const store = new PostgresAuditStore({ url, table: pgConfig.table, timeoutMs: pgConfig.timeoutMs })
  try {
    return await use(store)
  } finally {
    await store.close()
  }
}

/** Where a command reads the trail: `--store`, else PostgreSQL when configured, else the local file. */
function storeOf(values: CommandContext['values'], config: ServerConfig): 'file' | 'postgres' {
  return storeOption(values, config.auditPostgres === null ? 'file' : 'postgres')
}

/** `--store file|postgres`, or `fallback` without it. */
export function storeOption(values: CommandContext['values'], fallback: 'file' | 'postgres'): 'file' | 'postgres' {
  const store = typeof values['store'] === 'string' ? values['store'] : fallback
  if (store !== 'file' && store !== 'postgres') throw new UsageError(`--store is file or postgres, got '${store}'`)
  return store
}

/** Hands `visit` every line of the trail (the file with its rotated files, or PostgreSQL narrowed by `filter`). */
export async function eachTrailLine(
  config: ServerConfig,
  env: NodeJS.ProcessEnv,
  store: 'file' | 'postgres',
  filter: AuditFilter,
  visit: (lines: AsyncIterable<string>) => Promise<void>,
): Promise<void> {
  if (store === 'file') await visit(trailLines(config.auditFile))
  else await withPostgres(config, env, (pg) => visit(pg.lines(filter)))
}

/** The trail's lines, read into memory. */
export async function trailOf(
  config: ServerConfig,
  env: NodeJS.ProcessEnv,
  store: 'file' | 'postgres',
  filter: AuditFilter,
): Promise<string[]> {
  const all: string[] = []
  await eachTrailLine(config, env, store, filter, async (lines) => {
    for await (const line of lines) all.push(line)
  })
  return all
}

export const auditMigrateCommand: Command = {
  words: ['audit', 'migrate'],
  usage: 'corridor audit migrate   (creates or updates the audit table in audit.postgres; Corridor also does at start)',
  options: { ...CONFIG_OPTION },
  positionals: { min: 0, max: 0 },
  async run({ values, out, env }) {
    const config = loadServerConfig(configPath(values))
    await withPostgres(config, env, (store) => store.migrate())
    out(`audit table '${config.auditPostgres?.table ?? ''}' is up to date`)
    return 0
  },
}

function parseTime(text: string, flag: string): number {
  const t = Date.parse(text)
  if (Number.isNaN(t)) throw new UsageError(`${flag} takes an ISO time, got '${text}'`)
  return t
}

export const auditTraceCommand: Command = {
  words: ['audit', 'trace'],
  usage:
    'corridor audit trace (REQUEST_ID | apr_…) [--store file|postgres]   (intent → decision → approvers → credential → outcome, across replicas)',
  options: { ...CONFIG_OPTION, store: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals, out, err, env }) {
    const id = positionals[0] as string
    const config = loadServerConfig(configPath(values))
    const store = storeOf(values, config)
    const steps = await traceOf(id, (filter) => trailOf(config, env, store, filter), store === 'postgres')
    for (const s of steps) out(`${s.time}  [${s.stream.slice(0, 8)}]  ${s.what}`)
    if (steps.length === 0) {
      err(`nothing in the audit trail for '${id}'`)
      return 1
    }
    return 0
  },
}

export const auditExportCommand: Command = {
  words: ['audit', 'export'],
  usage:
    'corridor audit export --format ocsf [--since ISO] [--until ISO] [--store file|postgres]   (every entry, chain fields kept; with --since, each stream from its last checkpoint before it; verify the copy with audit verify --ocsf FILE)',
  options: {
    ...CONFIG_OPTION,
    format: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    store: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out, err, env }) {
    if (values['format'] !== 'ocsf') throw new UsageError('--format ocsf is the export format')
    const config = loadServerConfig(configPath(values))
    const store = storeOf(values, config)
    const since = typeof values['since'] === 'string' ? parseTime(values['since'], '--since') : undefined
    const until = typeof values['until'] === 'string' ? parseTime(values['until'], '--until') : undefined
    let exported = 0
    const emit = (line: string, entry?: Record<string, unknown>): void => {
      const event = toOcsf(line, entry)
      if (event === null) return
      out(JSON.stringify(event))
      exported++
    }
    if (since === undefined && until === undefined)
      await eachTrailLine(config, env, store, {}, async (lines) => {
        for await (const line of lines) emit(line)
      })
    else if (store === 'file') {
      // Two passes: where each stream's copy starts (a checkpoint), then the copy.
      const copy = new WindowCopy(until, await windowStarts(trailLines(config.auditFile), { since, until }))
      for await (const line of trailLines(config.auditFile)) {
        const p = chainPosition(line)
        if (p !== null && copy.keep(p)) emit(line, p.entry)
      }
    } else
      await withPostgres(config, env, async (pg) => {
        for (const [stream, fromSeq] of await pg.firstEntriesInWindow(since, until)) {
          // The rows start at the stream's last checkpoint at or before its first entry in the window.
          const copy = new WindowCopy(until, null)
          for await (const row of pg.verificationRows({ stream, fromSeq })) {
            const p = chainPosition(row.line)
            if (p !== null && copy.keep(p)) emit(row.line, p.entry)
          }
        }
      })
    err(`${exported} OCSF event(s)`)
    return 0
  },
}

export const auditReportCommand: Command = {
  words: ['audit', 'report'],
  usage:
    'corridor audit report --since ISO [--until ISO] [--format markdown|csv] [--store file|postgres]   (evidence per connector and agent, approvals, stops, chain status)',
  options: {
    ...CONFIG_OPTION,
    since: { type: 'string' },
    until: { type: 'string' },
    format: { type: 'string' },
    store: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out, env }) {
    if (typeof values['since'] !== 'string') throw new UsageError('report needs --since ISO-time')
    const since = parseTime(values['since'], '--since')
    const until = typeof values['until'] === 'string' ? parseTime(values['until'], '--until') : Date.now()
    const format = values['format'] ?? 'markdown'
    if (format !== 'markdown' && format !== 'csv') throw new UsageError('--format is markdown or csv')
    const config = loadServerConfig(configPath(values))
    const store = storeOf(values, config)
    // The whole trail is read (not only the range): the chain of the range verifies only from its streams' starts.
    const lines = await trailOf(config, env, store, {})
    const report = buildReport(lines, since, until)
    out(format === 'csv' ? reportCsv(report) : reportMarkdown(report))
    return report.verification.breaks.length === 0 ? 0 : 1
  },
}
