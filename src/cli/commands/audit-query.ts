/** `corridor audit query`: records of the audit file that match every filter given, one JSON line each. */
import { queryAudit, type AuditFilter } from '../../audit/query.ts'
import { loadServerConfig } from '../../config/server-config.ts'
import { CONFIG_OPTION, configPath, UsageError, type Command } from '../command.ts'

export const auditQueryCommand: Command = {
  words: ['audit', 'query'],
  usage:
    'corridor audit query [--agent ID] [--connector ID] [--action NAME] [--decision allow|deny|require_approval] [--outcome O] [--since ISO] [--until ISO] [--request-id ID] [--approval ID] [--limit N]',
  options: {
    ...CONFIG_OPTION,
    agent: { type: 'string' },
    connector: { type: 'string' },
    action: { type: 'string' },
    decision: { type: 'string' },
    outcome: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'request-id': { type: 'string' },
    approval: { type: 'string' },
    limit: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out, err }) {
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
    const limit = str(values['limit'])
    if (limit !== undefined && !/^[1-9]\d*$/.test(limit))
      throw new UsageError(`--limit takes a whole number, got '${limit}'`)
    const since = str(values['since'])
    const until = str(values['until'])
    const filter: AuditFilter = {
      agent: str(values['agent']),
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
    const { matched, unreadable } = await queryAudit(loadServerConfig(configPath(values)).auditFile, filter, (record) =>
      out(JSON.stringify(record)),
    )
    err(`${matched} record(s)${unreadable > 0 ? `; ${unreadable} unreadable line(s) skipped` : ''}`)
    return 0
  },
}

function parseTime(text: string, flag: string): number {
  const t = Date.parse(text)
  if (Number.isNaN(t)) throw new UsageError(`${flag} takes an ISO time, got '${text}'`)
  return t
}
