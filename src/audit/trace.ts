/**
 * One request's story from the audit trail, across replicas: the intent written before Corridor
 * acted, the decision (rule, reason, limiting factor, policy version), the hold and every
 * approver's decision, the credential lease, the release and the outcome, in time order. Given an
 * approval id, the same for every request of that approval (the hold, the agent's retries, the
 * release).
 */
import type { AuditFilter } from './query.ts'
import type { AuditRecord } from './record.ts'

export interface TraceStep {
  readonly time: string
  /** The stream (one per process start) that wrote it: which replica, which run. */
  readonly stream: string
  readonly what: string
}

interface Entry {
  type?: string
  time?: string
  stream?: string
  request_id?: string
  approval_id?: string
  approval?: { id?: string } | null
  [key: string]: unknown
}

/** The approval ids a request id leads to (its records' approval links, its intents' approval ids). */
export function approvalsOf(lines: Iterable<string>, requestId: string): Set<string> {
  const ids = new Set<string>()
  for (const e of entries(lines)) {
    if (e.request_id !== requestId) continue
    if (typeof e.approval_id === 'string') ids.add(e.approval_id)
    if (typeof e.approval?.id === 'string' && e.approval.id !== '') ids.add(e.approval.id)
  }
  return ids
}

/** The steps concerning `requestId` or any of `approvalIds`, in time order. */
export function traceSteps(
  lines: Iterable<string>,
  requestId: string | null,
  approvalIds: ReadonlySet<string>,
): TraceStep[] {
  const steps: TraceStep[] = []
  for (const e of entries(lines)) {
    const approval = typeof e.approval_id === 'string' ? e.approval_id : e.approval?.id
    const concerns =
      (requestId !== null && e.request_id === requestId) || (approval !== undefined && approvalIds.has(approval))
    if (!concerns) continue
    steps.push({ time: e.time ?? '', stream: e.stream ?? '-', what: describe(e) })
  }
  return steps.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0))
}

function* entries(lines: Iterable<string>): Generator<Entry> {
  for (const line of lines) {
    if (line === '') continue
    try {
      const value = JSON.parse(line) as unknown
      if (typeof value === 'object' && value !== null) yield value as Entry
    } catch {
      // not an entry (a line a full disk cut short): the query and verify commands report those
    }
  }
}

function describe(e: Entry): string {
  if (e.type === 'intent') {
    const r = e as unknown as AuditRecord & { act: string }
    return `intent to ${r.act}: ${r.agent ?? '?'}${r.user ? ` for ${r.user}` : ''} → ${r.connector ?? '?'}.${r.action ?? '?'} ${r.method} ${r.path}; ${decisionText(r)}${r.credential ? `; credential ${r.credential.reference}${r.credential.lease_id ? ` lease ${r.credential.lease_id}` : ''}` : ''}`
  }
  if (e.type === 'approval') {
    const a = e as unknown as {
      event: string
      approval_id: string
      by: string | null
      via: string | null
      reason: string | null
      state: string
    }
    return `approval ${a.approval_id} ${a.event}${a.by ? ` by ${a.by}${a.via ? ` (${a.via})` : ''}` : ''}${a.reason ? `: ${a.reason}` : ''} → ${a.state}`
  }
  if (e.type === 'request') {
    const r = e as unknown as AuditRecord
    const upstream = r.upstream_status === null ? '' : `; upstream ${r.upstream_status} in ${r.upstream_ms ?? '?'} ms`
    const error = r.error_code === null ? '' : `; ${r.error_code}${r.error_detail ? ` (${r.error_detail})` : ''}`
    return `request ${r.request_id} ${r.outcome} ${r.status}: ${r.agent ?? '?'} → ${r.connector ?? '?'}.${r.action ?? '?'} ${r.method} ${r.path}; ${decisionText(r)}${upstream}${error}${r.intent ? `; intent "${r.intent}"` : ''}`
  }
  return `${e.type ?? 'entry'}`
}

function decisionText(r: AuditRecord): string {
  if (r.decision === null) return 'not decided'
  return `${r.decision}${r.rule ? ` by rule ${r.rule}` : ''}${r.limiting_factor ? ` (limited by ${r.limiting_factor})` : ''}: ${r.reason ?? ''} [policy ${r.policy_version ?? '?'}]`
}

/**
 * The one story of a request id or an approval id (`apr_…`), read with `read`: its entries, then,
 * when `byApproval` (a store narrowed by approval), every approval it led to. An entry read twice
 * (a request record that also carries the approval) appears once.
 */
export async function traceOf(
  id: string,
  read: (filter: AuditFilter) => Promise<string[]>,
  byApproval: boolean,
): Promise<TraceStep[]> {
  const isApproval = id.startsWith('apr_')
  const first = await read(isApproval ? { approval: id } : { requestId: id })
  const approvals = isApproval ? new Set([id]) : approvalsOf(first, id)
  let lines = first
  if (byApproval && !isApproval) for (const approval of approvals) lines = lines.concat(await read({ approval }))
  const seen = new Set<string>()
  return traceSteps(lines, isApproval ? null : id, approvals).filter((s) => {
    const key = `${s.stream}\u0000${s.time}\u0000${s.what}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
