/**
 * An evidence report over a time range, for record-keeping reviews (SOC 2, EU AI Act Art. 12):
 * per connector and agent, the requests, the decisions by effect and limiting factor, the
 * outcomes and the refusals by limits; every approval with who decided and how long it took; the
 * operator stops; and whether the hash chain of the range verifies. Built from audit lines alone,
 * so it reads the same from a file or from PostgreSQL.
 */
import { verifyLines, type VerifyReport } from './chain.ts'
import type { AuditRecord } from './record.ts'

export interface ReportRow {
  readonly connector: string
  readonly agent: string
  requests: number
  readonly decisions: Record<string, number>
  readonly limitingFactors: Record<string, number>
  readonly outcomes: Record<string, number>
  limitRefusals: number
  stopped: number
}

export interface ApprovalLine {
  readonly id: string
  readonly agent: string
  readonly action: string
  heldAt: string | null
  decidedAt: string | null
  decision: string | null
  decidedBy: string[]
}

export interface EvidenceReport {
  readonly since: string
  readonly until: string
  readonly rows: ReportRow[]
  readonly approvals: ApprovalLine[]
  readonly stops: { time: string; event: string; scope: string; by: string; reason: string }[]
  readonly verification: VerifyReport
}

const LIMIT_CODES = new Set(['rate_limited', 'budget_exceeded', 'loop_detected'])

export function buildReport(lines: readonly string[], since: number, until: number): EvidenceReport {
  const rows = new Map<string, ReportRow>()
  const approvals = new Map<string, ApprovalLine>()
  const stops: EvidenceReport['stops'] = []
  const inRange = (time: unknown): boolean => {
    const t = typeof time === 'string' ? Date.parse(time) : NaN
    return t >= since && t <= until
  }
  for (const line of lines) {
    let e: Record<string, unknown>
    try {
      e = JSON.parse(line) as Record<string, unknown>
    } catch {
      continue
    }
    if (!inRange(e['time'])) continue
    if (e['type'] === 'request') {
      const r = e as unknown as AuditRecord
      const key = `${r.connector ?? '-'}\u0000${r.agent ?? '-'}`
      let row = rows.get(key)
      if (row === undefined)
        rows.set(
          key,
          (row = {
            connector: r.connector ?? '-',
            agent: r.agent ?? '(unidentified)',
            requests: 0,
            decisions: {},
            limitingFactors: {},
            outcomes: {},
            limitRefusals: 0,
            stopped: 0,
          }),
        )
      row.requests++
      if (r.decision !== null) row.decisions[r.decision] = (row.decisions[r.decision] ?? 0) + 1
      if (r.limiting_factor !== null)
        row.limitingFactors[r.limiting_factor] = (row.limitingFactors[r.limiting_factor] ?? 0) + 1
      row.outcomes[r.outcome] = (row.outcomes[r.outcome] ?? 0) + 1
      if (r.error_code !== null && LIMIT_CODES.has(r.error_code)) row.limitRefusals++
      if (r.error_code === 'agent_stopped') row.stopped++
    } else if (e['type'] === 'approval') {
      const id = String(e['approval_id'])
      let a = approvals.get(id)
      if (a === undefined)
        approvals.set(
          id,
          (a = {
            id,
            agent: String(e['agent']),
            action: `${String(e['connector'])}.${String(e['action'])}`,
            heldAt: null,
            decidedAt: null,
            decision: null,
            decidedBy: [],
          }),
        )
      const event = String(e['event'])
      if (event === 'held') a.heldAt = String(e['time'])
      if (['approved', 'rejected', 'expired', 'cancelled'].includes(event)) {
        a.decidedAt = String(e['time'])
        a.decision = event
      }
      if (
        (event === 'approved' || event === 'approval_recorded' || event === 'rejected') &&
        typeof e['by'] === 'string'
      )
        a.decidedBy.push(e['by'])
    } else if (e['type'] === 'stop') {
      const scope = Object.entries((e['scope'] as Record<string, string> | undefined) ?? {})
        .map(([k, v]) => `${k}:${v}`)
        .join(' ')
      stops.push({
        time: String(e['time']),
        event: String(e['event']),
        scope: scope === '' ? 'global' : scope,
        by: String(e['by']),
        reason: String(e['reason']),
      })
    }
  }
  return {
    since: new Date(since).toISOString(),
    until: new Date(until).toISOString(),
    rows: [...rows.values()].sort((a, b) => a.connector.localeCompare(b.connector) || a.agent.localeCompare(b.agent)),
    approvals: [...approvals.values()].sort((a, b) => (a.heldAt ?? '').localeCompare(b.heldAt ?? '')),
    stops,
    verification: verifyLines(lines, null),
  }
}

const counts = (m: Record<string, number>): string =>
  Object.entries(m)
    .sort()
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '—'

const minutes = (from: string | null, to: string | null): string =>
  from === null || to === null ? '—' : `${((Date.parse(to) - Date.parse(from)) / 60_000).toFixed(1)} min`

export function reportMarkdown(r: EvidenceReport): string {
  const v = r.verification
  const out = [
    `# Corridor evidence report, ${r.since} to ${r.until}`,
    '',
    `Hash chain: ${v.breaks.length === 0 ? 'intact' : `BROKEN (${v.breaks.map((b) => `stream ${b.stream} at entry ${b.seq}: ${b.why}${b.lastCheckpoint === null ? '' : `; intact up to the checkpoint at entry ${b.lastCheckpoint.seq}, ${b.lastCheckpoint.time}`}`).join('; ')})`} over ${v.entries} entries in ${v.streams} stream(s), ${v.checkpoints} checkpoint(s) (signatures not checked here: run corridor audit verify --public-key).`,
    '',
    '## Requests by connector and agent',
    '',
    '| connector | agent | requests | decisions | limiting factors | outcomes | refused by limits | refused by stops |',
    '|---|---|---|---|---|---|---|---|',
    ...r.rows.map(
      (x) =>
        `| ${x.connector} | ${x.agent} | ${x.requests} | ${counts(x.decisions)} | ${counts(x.limitingFactors)} | ${counts(x.outcomes)} | ${x.limitRefusals} | ${x.stopped} |`,
    ),
    '',
    '## Approvals',
    '',
    '| approval | agent | action | held | decided | decision | by | time to decide |',
    '|---|---|---|---|---|---|---|---|',
    ...r.approvals.map(
      (a) =>
        `| ${a.id} | ${a.agent} | ${a.action} | ${a.heldAt ?? '—'} | ${a.decidedAt ?? '—'} | ${a.decision ?? 'pending'} | ${a.decidedBy.join(', ') || '—'} | ${minutes(a.heldAt, a.decidedAt)} |`,
    ),
    '',
    '## Operator stops',
    '',
    '| time | event | scope | by | reason |',
    '|---|---|---|---|---|',
    ...r.stops.map((s) => `| ${s.time} | ${s.event} | ${s.scope} | ${s.by} | ${s.reason.replaceAll('|', '/')} |`),
    '',
  ]
  return out.join('\n')
}

/** One CSV row per connector and agent (the requests table), for spreadsheets. */
export function reportCsv(r: EvidenceReport): string {
  const cell = (v: string | number): string => (typeof v === 'number' ? String(v) : `"${v.replaceAll('"', '""')}"`)
  const header = [
    'connector',
    'agent',
    'requests',
    'allow',
    'deny',
    'require_approval',
    'forwarded',
    'refused_by_limits',
    'refused_by_stops',
  ]
  return [
    header.join(','),
    ...r.rows.map((x) =>
      [
        cell(x.connector),
        cell(x.agent),
        x.requests,
        x.decisions['allow'] ?? 0,
        x.decisions['deny'] ?? 0,
        x.decisions['require_approval'] ?? 0,
        x.outcomes['forwarded'] ?? 0,
        x.limitRefusals,
        x.stopped,
      ].join(','),
    ),
  ].join('\n')
}
