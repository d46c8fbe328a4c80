/**
 * `corridor audit query`: streams the audit file and prints the records that match, so the
 * trail can be searched without loading it whole. Lines that are not records (sink markers, a
 * line cut short by a full disk) are skipped and counted.
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import type { AuditRecord } from './record.ts'

export interface AuditFilter {
  agent?: string | undefined
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

export async function queryAudit(
  file: string,
  filter: AuditFilter,
  onRecord: (r: AuditRecord) => void,
): Promise<{ matched: number; unreadable: number }> {
  let matched = 0
  let unreadable = 0
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity })
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
    const event = value as { type?: string; approval_id?: string }
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
  lines.close()
  return { matched, unreadable }
}
