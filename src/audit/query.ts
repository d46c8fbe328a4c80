/**
 * `corridor audit query`: streams the audit file and prints the records that match, so the
 * trail can be searched without loading it whole. Lines that are not records (sink markers, a
 * line cut short by a full disk) are skipped and counted.
 *
 * One logical record per request: an intent entry (written before Corridor forwarded, held or
 * released) is folded into the request record that follows it. An intent with no record after it
 * means Corridor stopped mid-action; it is printed at the end as a record with outcome
 * `incomplete`, carrying what the intent knew.
 */
import { newAuditRecord, type AuditRecord } from './record.ts'
import { trailLines } from './trails.ts'

export interface AuditFilter {
  agent?: string | undefined
  owner?: string | undefined
  /** The delegated user the agent acted for. */
  user?: string | undefined
  /** Text the agent's stated intent contains (case-insensitive). */
  intentContains?: string | undefined
  connector?: string | undefined
  action?: string | undefined
  decision?: string | undefined
  outcome?: string | undefined
  requestId?: string | undefined
  /** Every record and approval event of one approval (the hold, decisions, the release, retries). */
  approval?: string | undefined
  since?: number | undefined
  until?: number | undefined
  limit?: number | undefined
}

export function matchesFilter(record: AuditRecord, f: AuditFilter): boolean {
  if (f.agent !== undefined && record.agent !== f.agent) return false
  if (f.owner !== undefined && record.owner !== f.owner) return false
  if (f.user !== undefined && record.user !== f.user) return false
  if (
    f.intentContains !== undefined &&
    (record.intent === null || !record.intent.toLowerCase().includes(f.intentContains.toLowerCase()))
  )
    return false
  if (f.connector !== undefined && record.connector !== f.connector) return false
  if (f.action !== undefined && record.action !== f.action) return false
  if (f.decision !== undefined && record.decision !== f.decision) return false
  if (f.outcome !== undefined && record.outcome !== f.outcome) return false
  if (f.requestId !== undefined && record.request_id !== f.requestId) return false
  if (f.approval !== undefined && record.approval?.id !== f.approval) return false
  if (f.since !== undefined || f.until !== undefined) {
    const t = Date.parse(record.time)
    if (f.since !== undefined && t < f.since) return false
    if (f.until !== undefined && t > f.until) return false
  }
  return true
}

/** The fields of an intent entry (see AuditSink.writeIntent). */
type IntentEntry = Partial<AuditRecord> & { request_id: string; act: string; approval_id: string | null }

function incompleteRecord(intent: IntentEntry): AuditRecord {
  const { act, approval_id, ...known } = intent
  return {
    ...newAuditRecord(intent.request_id, Date.parse(intent.time ?? '') || 0, intent.method ?? '', intent.path ?? ''),
    ...known,
    type: 'request',
    approval: approval_id === null ? null : { ...EMPTY_LINK, id: approval_id },
    outcome: 'incomplete',
    error_detail: `intent '${act}' written, no outcome recorded (Corridor stopped mid-action)`,
  }
}

const EMPTY_LINK = {
  id: '',
  state: 'unknown',
  digest: '',
  held_request_id: '',
  executed_request_id: null,
  approved_by: [],
  rejected_by: null,
} as const

/** Queries every trail of an audit file (trails.ts): each worker's, rotated files included. */
export async function queryAudit(
  file: string,
  filter: AuditFilter,
  onRecord: (r: AuditRecord) => void,
): Promise<{ matched: number; unreadable: number }> {
  return queryAuditLines(trailLines(file), filter, onRecord)
}

/** The same query over any source of audit lines in the order they were written (a file, the PostgreSQL copy). */
export async function queryAuditLines(
  lines: AsyncIterable<string>,
  filter: AuditFilter,
  onRecord: (r: AuditRecord) => void,
): Promise<{ matched: number; unreadable: number }> {
  let matched = 0
  let unreadable = 0
  // Intents whose request record has not been read yet; nearly all are met within a few lines.
  const intents = new Map<string, IntentEntry>()
  for await (const line of lines) {
    if (line === '') continue
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      unreadable++
      continue
    }
    const record = value as AuditRecord
    const event = value as { type?: string; approval_id?: string; request_id?: unknown }
    if (event.type === 'intent') {
      if (typeof event.request_id === 'string') intents.set(event.request_id, value as IntentEntry)
      continue
    }
    if (typeof record.request_id === 'string') intents.delete(record.request_id)
    if (filter.approval !== undefined && event.type === 'approval') {
      if (event.approval_id !== filter.approval) continue
      onRecord(record)
      matched++
      continue
    }
    // The file is input like any other: a line that is not a version-1 record is skipped, whatever its type says.
    if ((record as { v?: unknown }).v !== 1 || typeof record.request_id !== 'string') continue
    if (!matchesFilter(record, filter)) continue
    onRecord(record)
    matched++
    if (filter.limit !== undefined && matched >= filter.limit) break
  }
  for (const intent of intents.values()) {
    if (filter.limit !== undefined && matched >= filter.limit) break
    const record = incompleteRecord(intent)
    if (filter.approval !== undefined ? record.approval?.id !== filter.approval : !matchesFilter(record, filter))
      continue
    onRecord(record)
    matched++
  }
  return { matched, unreadable }
}
