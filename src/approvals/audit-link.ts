/** How an approval appears in audit records and events. */
import type { ApprovalAuditEvent, ApprovalEvent, ApprovalLink } from '../audit/record.ts'
import type { Approval } from './approval.ts'
import type { ApproverIdentity } from './eligibility.ts'

export function approvalLink(approval: Approval): ApprovalLink {
  const h = approval.held
  const decision = (d: { approver: string; at: number; reason: string }) => ({
    approver: d.approver,
    at: new Date(d.at).toISOString(),
    reason: d.reason,
  })
  return {
    id: h.id,
    state: approval.state,
    digest: h.digest,
    held_request_id: h.heldRequestId,
    executed_request_id: approval.result?.executedRequestId ?? null,
    approved_by: approval.approvals.map(decision),
    rejected_by: approval.rejection === null ? null : decision(approval.rejection),
  }
}

export function approvalEvent(
  event: ApprovalEvent,
  approval: Approval,
  nowMs: number,
  by: ApproverIdentity | null = null,
  reason: string | null = null,
): ApprovalAuditEvent {
  const h = approval.held
  return {
    type: 'approval',
    v: 1,
    time: new Date(nowMs).toISOString(),
    event,
    approval_id: h.id,
    held_request_id: h.heldRequestId,
    agent: h.agent,
    connector: h.connector,
    action: h.action,
    digest: h.digest,
    policy_version: h.policyVersion,
    state: approval.state,
    by: by?.id ?? null,
    by_groups: by?.groups ?? null,
    via: by?.via ?? null,
    reason,
  }
}
