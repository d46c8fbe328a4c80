/**
 * The audit trail rendered as OCSF events for SIEMs: each request record as API Activity
 * (class 6003), every other entry (intents, approval and stop events, checkpoints) as a Base Event
 * (class 0), so that the export holds the whole chain. Each event carries the chain in
 * `attestation` (the stream as `chain_uid`, the entry's hash as its fingerprint, the previous
 * hash, the sequence number) and the line exactly as Corridor wrote it in `raw_data`: the hashes
 * are over that line, so `corridor audit verify --ocsf` checks the chain on the SIEM's copy.
 */
import { chainedEntry } from './chain.ts'
import type { AuditRecord } from './record.ts'

const PRODUCT = { name: 'Corridor', vendor_name: 'Corridor', version: '0.1.0' }

/** OCSF API Activity activity ids by HTTP method: 1 create, 2 read, 3 update, 4 delete, 99 other. */
function activityOf(method: string): { id: number; name: string } {
  if (method === 'POST') return { id: 1, name: 'Create' }
  if (method === 'GET' || method === 'HEAD') return { id: 2, name: 'Read' }
  if (method === 'PUT' || method === 'PATCH') return { id: 3, name: 'Update' }
  if (method === 'DELETE') return { id: 4, name: 'Delete' }
  return { id: 99, name: 'Other' }
}

/** One audit line as an OCSF event, or null when the line is not a chained entry (`e`: the line already parsed). */
export function toOcsf(line: string, e = chainedEntry(line)): Record<string, unknown> | null {
  if (e === null) return null
  const time = Date.parse(typeof e['time'] === 'string' ? e['time'] : '') || 0
  const attestation = {
    uid: `${e['stream']}:${String(e['seq'])}`,
    chain_uid: e['stream'],
    seq: e['seq'],
    fingerprint: { algorithm: 'SHA-256', algorithm_id: 3, value: e['hash'] },
    prev_event: { fingerprint: { algorithm: 'SHA-256', algorithm_id: 3, value: e['prev'] } },
  }
  const base = {
    metadata: { version: '1.5.0', product: PRODUCT, uid: attestation.uid, log_name: 'corridor-audit' },
    time,
    severity_id: 1,
    raw_data: line,
    attestation,
  }
  if (e['type'] !== 'request')
    return {
      ...base,
      category_uid: 0,
      class_uid: 0,
      class_name: 'Base Event',
      type_uid: 99,
      activity_id: 99,
      message: `corridor ${String(e['type'])}${typeof e['event'] === 'string' ? ` ${e['event']}` : ''}`,
      unmapped: { corridor_type: e['type'] },
    }
  const r = e as unknown as AuditRecord
  const activity = activityOf(r.method)
  const success = r.outcome === 'forwarded' || r.outcome === 'released' || r.outcome === 'served'
  return {
    ...base,
    category_uid: 6,
    category_name: 'Application Activity',
    class_uid: 6003,
    class_name: 'API Activity',
    activity_id: activity.id,
    activity_name: activity.name,
    type_uid: 6003 * 100 + activity.id,
    status_id: success ? 1 : 2,
    status: success ? 'Success' : 'Failure',
    status_code: r.error_code ?? String(r.status),
    status_detail: r.reason ?? undefined,
    actor: {
      user: { uid: r.agent ?? undefined, type: 'Agent', groups: r.owner === null ? undefined : [{ name: r.owner }] },
      ...(r.user === null ? {} : { invoked_by: r.user }),
    },
    api: {
      operation: r.action ?? `${r.method} ${r.path}`,
      service: { name: r.connector ?? undefined },
      request: { uid: r.request_id },
    },
    http_request: { http_method: r.method, url: { path: r.path, query_string: r.query || undefined } },
    http_response: { code: r.status },
    duration: Math.round(r.duration_ms),
    unmapped: {
      decision: r.decision,
      rule: r.rule,
      limiting_factor: r.limiting_factor,
      policy_version: r.policy_version,
      outcome: r.outcome,
      approval_id: r.approval?.id ?? null,
      approved_by: r.approval?.approved_by.map((a) => a.approver) ?? [],
      credential_reference: r.credential?.reference ?? null,
      credential_lease: r.credential?.lease_id ?? null,
      intent: r.intent,
    },
  }
}

/** The Corridor lines an OCSF export carries (for verifying the chain on a SIEM's copy). */
export function linesFromOcsf(lines: Iterable<string>): string[] {
  const out: string[] = []
  for (const line of lines) {
    if (line.trim() === '') continue
    try {
      const raw = (JSON.parse(line) as { raw_data?: unknown }).raw_data
      out.push(typeof raw === 'string' ? raw : '')
    } catch {
      out.push('')
    }
  }
  return out
}
