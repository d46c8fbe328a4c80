/**
 * The agent's side of the approval queue: a request the policy holds is persisted, and the
 * agent's connection waits (bounded) for a decision. If one arrives in time the agent gets the
 * upstream's response as if nothing had happened; if not, a 202 problem+json names the approval,
 * its status URL and when to ask again. Asking again (the same request with X-Corridor-Approval,
 * or the same Idempotency-Key) waits again, then returns the result, which was produced by
 * exactly one forward on whichever replica released it.
 */
import type { ServerResponse } from 'node:http'
import type { Approval, HeldRequest } from '../approvals/approval.ts'
import type { ApprovalService } from '../approvals/approval-service.ts'
import { approvalLink } from '../approvals/audit-link.ts'
import type { AuditRecord } from '../audit/record.ts'
import { isJson, type FollowUps } from '../forwarding/follow-ups.ts'
import type { HoldStatus } from '../registry/connectors-schema.ts'
import { APPROVAL_STATUS_PREFIX } from '../shared/corridor-paths.ts'
import { CorridorError } from '../shared/errors.ts'

// The held call already waited `approvals.wait` on its connection: the next attempt may come at once and wait again.
const RETRY_AFTER_SEC = 1

export function statusUrl(id: string): string {
  return APPROVAL_STATUS_PREFIX + encodeURIComponent(id)
}

/** How a held call is answered on this connector: the wait, and the status of the answer while it is held. */
export interface HoldAnswer {
  readonly waitMs: number
  readonly status: HoldStatus
  /** Rewrites upstream URLs in a released result to Corridor URLs, at the address this agent used. */
  readonly followUps: FollowUps | null
}

/** A new hold: persist it, then wait for a decision on the agent's connection. */
export async function holdForApproval(
  approvals: ApprovalService,
  how: HoldAnswer,
  res: ServerResponse,
  record: AuditRecord,
  held: HeldRequest,
  idempotencyKey: string | null,
): Promise<void> {
  if (!approvals.takeConnectionSlot()) {
    throw new CorridorError(
      'approval_capacity',
      `Corridor is already holding ${approvals.heldConnections} connections for approvals; nothing was queued, try again shortly`,
    )
  }
  try {
    const approval = await approvals.hold(held, idempotencyKey)
    // An approval other than this one: the agent sent this Idempotency-Key before. The same request resumes it, another is refused.
    if (approval.held.id !== held.id && approval.held.digest !== held.digest) {
      throw new CorridorError(
        'approval_mismatch',
        'this Idempotency-Key was used for a different request that is held for approval; use a new key',
        { details: { approval_id: approval.held.id } },
      )
    }
    await answerAfterWait(approvals, how, res, record, approval)
  } finally {
    approvals.releaseConnectionSlot()
  }
}

/** A retry naming its approval: same agent, same request, then wait as a hold does. */
export async function resumeApproval(
  approvals: ApprovalService,
  how: HoldAnswer,
  res: ServerResponse,
  record: AuditRecord,
  id: string,
  agentId: string,
  digest: string,
): Promise<void> {
  const approval = await approvals.get(id)
  // Another agent's approval is reported as missing, not as forbidden: ids are not to be probed.
  if (approval === null || approval.held.agent !== agentId)
    throw new CorridorError('approval_not_found', `no approval '${id}' for this agent`)
  if (approval.held.digest !== digest) {
    throw new CorridorError(
      'approval_mismatch',
      'this request differs from the one held for approval (method, URL, headers or body); a different request needs its own approval',
      {
        details: { approval_id: id, held_digest: approval.held.digest, request_digest: digest },
      },
    )
  }
  const slot = approvals.takeConnectionSlot()
  try {
    await answerAfterWait(approvals, slot ? how : { ...how, waitMs: 0 }, res, record, approval)
  } finally {
    if (slot) approvals.releaseConnectionSlot()
  }
}

/** GET /_corridor/approvals/:id for the agent that asked: where its approval stands, without waiting. */
export function approvalStatusBody(approval: Approval): Record<string, unknown> {
  const h = approval.held
  return {
    approval_id: h.id,
    state: approval.state,
    connector: h.connector,
    action: h.action,
    method: h.request.method,
    target: h.request.target,
    digest: h.digest,
    required_approvals: h.required,
    approvals: approval.approvals.map((d) => ({ approver: d.approver, at: new Date(d.at).toISOString() })),
    rejected:
      approval.rejection === null ? null : { approver: approval.rejection.approver, reason: approval.rejection.reason },
    cancel_reason: approval.cancelReason,
    expires_at: new Date(h.expiresAt).toISOString(),
    result: approval.result === null ? null : { status: approval.result.status, error_code: approval.result.errorCode },
  }
}

async function answerAfterWait(
  approvals: ApprovalService,
  how: HoldAnswer,
  res: ServerResponse,
  record: AuditRecord,
  known: Approval,
): Promise<void> {
  const id = known.held.id
  const gone = new AbortController()
  const onClose = (): void => gone.abort()
  res.once('close', onClose)
  let approval: Approval | null
  try {
    approval = await approvals.waitForAnswer(known, how.waitMs, gone.signal)
  } catch (err) {
    if (err instanceof CorridorError && err.code === 'approval_unavailable') {
      throw new CorridorError(
        'approval_unavailable',
        'the approval queue cannot be reached now; ask again with X-Corridor-Approval',
        { details: { approval_id: id, status_url: statusUrl(id) } },
      )
    }
    throw err
  } finally {
    res.off('close', onClose)
  }
  if (approval === null) throw new CorridorError('approval_not_found', `approval '${id}' no longer exists`)
  answer(res, record, approval, how)
}

function answer(res: ServerResponse, record: AuditRecord, approval: Approval, how: HoldAnswer): void {
  const h = approval.held
  record.approval = approvalLink(approval)
  if (record.decision === null) {
    // A retry by approval id is answered from the approval: its record carries the decision that held it.
    record.decision = 'require_approval'
    record.rule = h.rule
    record.reason = h.reason
    record.policy_version = h.policyVersion
    record.approvers = h.approverGroups
  }
  const ids = { approval_id: h.id, status_url: statusUrl(h.id) }
  switch (approval.state) {
    case 'pending':
    case 'approved':
    case 'executing':
      throw new CorridorError(
        'approval_pending',
        `held for approval ${h.id} (${approval.state}, ${approval.approvals.length} of ${h.required} approvals from ${h.approverGroups.join(' or ')}): ${h.reason}. Send the same request again to wait for the result; it joins this approval.`,
        {
          status: how.status,
          details: {
            rule: h.rule,
            reason: h.reason,
            policyVersion: h.policyVersion,
            ...ids,
            state: approval.state,
            approvers: h.approverGroups,
            required_approvals: h.required,
            expires_at: new Date(h.expiresAt).toISOString(),
            retry_after: RETRY_AFTER_SEC,
          },
          headers: {
            'retry-after': String(RETRY_AFTER_SEC),
            location: ids.status_url,
            'x-corridor-approval': h.id,
            // SDKs that honour these retry even statuses they would not (Stainless: OpenAI, Anthropic; Stripe).
            'x-should-retry': 'true',
            'stripe-should-retry': 'true',
          },
        },
      )
    case 'rejected':
      throw new CorridorError(
        'approval_rejected',
        `rejected by ${approval.rejection?.approver ?? 'an approver'}: ${approval.rejection?.reason ?? ''}`,
        { details: { ...ids, rejected_by: approval.rejection?.approver, reason: approval.rejection?.reason } },
      )
    case 'expired':
      throw new CorridorError(
        'approval_expired',
        `nobody decided before ${new Date(h.expiresAt).toISOString()}; send the request again (with a new Idempotency-Key, if you use them) to ask anew`,
        { details: ids },
      )
    case 'cancelled':
      throw new CorridorError('approval_cancelled', `cancelled: ${approval.cancelReason ?? ''}`, {
        details: { ...ids, reason: approval.cancelReason ?? undefined },
      })
    case 'unknown':
      throw new CorridorError(
        'approval_outcome_unknown',
        'Corridor lost track of this approved request while forwarding it: it was sent at most once and will not be sent again; check the system of record',
        { details: ids },
      )
    case 'executed':
      return replay(res, record, approval, how.followUps)
  }
}

function replay(res: ServerResponse, record: AuditRecord, approval: Approval, followUps: FollowUps | null): void {
  const result = approval.result
  if (result === null) throw new CorridorError('internal', 'approval executed without a result')
  record.upstream_status = result.status === 0 ? null : result.status
  if (result.errorCode !== null) {
    throw new CorridorError(
      result.errorCode,
      `the approved request was forwarded once and failed (${result.errorCode}); it will not be sent again`,
      {
        details: { approval_id: approval.held.id, upstream_status: result.status === 0 ? undefined : result.status },
      },
    )
  }
  // The result was stored as the upstream sent it (masked); its follow-up URLs lead back through Corridor.
  const stored = Buffer.from(result.bodyBase64, 'base64')
  const body = followUps !== null && isJson(result.headers['content-type']) ? followUps.json(stored) : stored
  record.outcome = 'released'
  record.bytes_out = body.length
  const relayed: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(result.headers))
    relayed[name] =
      followUps === null
        ? value
        : Array.isArray(value)
          ? value.map((v) => followUps.header(name, v))
          : followUps.header(name, value)
  const headers: Record<string, string | string[]> = {
    ...relayed,
    'x-corridor-request-id': record.request_id,
    'x-corridor-approval': approval.held.id,
    'content-length': String(body.length),
  }
  res.writeHead(result.status, headers)
  res.end(body)
}
