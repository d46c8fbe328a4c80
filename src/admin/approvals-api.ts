/**
 * The approvers' HTTP API on the admin listener (the CLI and any console use it):
 *
 *   GET  /approvals[?state=pending|approved|executing&offset=0&limit=50]
 *   GET  /approvals/:id
 *   POST /approvals/:id/approve   {"reason": "…", "digest": "sha256:…"}
 *   POST /approvals/:id/reject    {"reason": "…"}
 *
 * Every call is authenticated (approver key or IdP JWT). Approvers see and decide only the
 * requests whose rule names one of their groups; a decision needs a reason, and an approval
 * may carry the digest the approver reviewed, so that what executes is exactly what they saw.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Approval } from '../approvals/approval.ts'
import type { ApprovalService } from '../approvals/approval-service.ts'
import type { ApproverAuthenticator } from '../approvals/approver-auth.ts'
import { mayView } from '../approvals/eligibility.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import { CorridorError } from '../shared/errors.ts'
import { readLimited } from '../shared/read-limited.ts'
import { sendFailure, sendJson } from './respond.ts'
import type { Logger } from '../shared/logger.ts'

const MAX_BODY = 16 * 1024
const MAX_REASON = 1_000
/** How many approvals are read from the store at a time while paging over the visible ones. */
const SCAN_PAGE = 500
const ROUTE = /^\/approvals(?:\/([A-Za-z0-9_-]{1,100})(?:\/(approve|reject))?)?$/

export interface ApprovalsApi {
  /** True when the request was an approvals call (answered here). */
  handle(req: IncomingMessage, res: ServerResponse): boolean
}

export function createApprovalsApi(
  approvals: ApprovalService,
  authenticator: ApproverAuthenticator,
  policies: PolicyStore,
  log: Logger,
): ApprovalsApi {
  const serve = async (req: IncomingMessage, res: ServerResponse, url: URL, m: RegExpExecArray): Promise<void> => {
    const bundle = policies.current
    if (bundle === null) throw new CorridorError('policy_unavailable')
    const approver = await authenticator.authenticate(req.headers.authorization, bundle)
    const [, id, verb] = m
    if (id === undefined) {
      if (req.method !== 'GET') throw new CorridorError('bad_request', 'list approvals with GET')
      const state = url.searchParams.get('state') ?? 'pending'
      if (state !== 'pending' && state !== 'approved' && state !== 'executing')
        throw new CorridorError('bad_request', 'state is pending, approved or executing')
      const offset = Math.max(0, Number(url.searchParams.get('offset') ?? 0) || 0)
      const limit = Math.min(500, Math.max(1, Number(url.searchParams.get('limit') ?? 50) || 50))
      // Paged over what this approver may see, so that neither the page nor `more` tells anything of other groups' queues.
      const visible: Approval[] = []
      for (let from = 0; visible.length <= offset + limit; from += SCAN_PAGE) {
        const page = await approvals.list(state, from, SCAN_PAGE)
        for (const a of page) if (mayView(approver, a.held)) visible.push(a)
        if (page.length < SCAN_PAGE) break
      }
      return sendJson(res, 200, {
        approvals: visible.slice(offset, offset + limit).map(summary),
        offset,
        limit,
        more: visible.length > offset + limit,
      })
    }
    if (verb === undefined) {
      if (req.method !== 'GET') throw new CorridorError('bad_request', 'show an approval with GET')
      const approval = await approvals.get(id)
      if (approval === null || !mayView(approver, approval.held))
        throw new CorridorError('approval_not_found', `no approval '${id}' that you may see`)
      return sendJson(res, 200, detail(approval))
    }
    if (req.method !== 'POST') throw new CorridorError('bad_request', `${verb} with POST`)
    const input = parseDecision(
      await readLimited(
        req,
        MAX_BODY,
        () => new CorridorError('body_too_large', `a decision is at most ${MAX_BODY} bytes`),
      ),
    )
    const after = await approvals.decide(id, approver, verb === 'approve', input.reason, input.digest)
    log.info({ approvalId: id, approver: approver.id, via: approver.via, verb }, 'approver decision recorded')
    sendJson(res, 200, detail(after))
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://admin')
      const m = ROUTE.exec(url.pathname)
      if (m === null) return false
      serve(req, res, url, m).catch((err: unknown) =>
        sendFailure(req, res, err, log, 'approvals', ['approver_unauthenticated', 'approver_not_eligible']),
      )
      return true
    },
  }
}

function parseDecision(raw: string): { reason: string; digest: string | null } {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    throw new CorridorError('bad_request', 'send {"reason": "…"} as JSON')
  }
  const v = value as { reason?: unknown; digest?: unknown }
  if (typeof v.reason !== 'string' || v.reason.trim() === '')
    throw new CorridorError('bad_request', 'every decision needs a reason')
  if (v.reason.length > MAX_REASON)
    throw new CorridorError('bad_request', `a reason is at most ${MAX_REASON} characters`)
  if (v.digest !== undefined && (typeof v.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(v.digest)))
    throw new CorridorError('bad_request', 'digest is the sha256:… value shown for the approval')
  return { reason: v.reason.trim(), digest: (v.digest as string | undefined) ?? null }
}

function summary(a: Approval): Record<string, unknown> {
  const h = a.held
  return {
    id: h.id,
    state: a.state,
    agent: h.agent,
    owner: h.owner,
    user: h.user,
    connector: h.connector,
    action: h.action,
    risk: h.risk,
    request: `${h.request.method} ${h.request.target}`,
    intent: h.intent,
    approvers: h.approverGroups,
    approvals: `${a.approvals.length}/${h.required}`,
    created_at: new Date(h.createdAt).toISOString(),
    expires_at: new Date(h.expiresAt).toISOString(),
  }
}

function detail(a: Approval): Record<string, unknown> {
  const h = a.held
  const body = Buffer.from(h.request.bodyBase64, 'base64')
  const text = body.toString('utf8')
  return {
    ...summary(a),
    digest: h.digest,
    rule: h.rule,
    reason: h.reason,
    policy_version: h.policyVersion,
    tier: h.tier,
    user_groups: h.userGroups,
    task_id: h.taskId,
    required_approvals: h.required,
    held_request_id: h.heldRequestId,
    method: h.request.method,
    target: h.request.target,
    headers: h.request.headers.map(([n, v]) => `${n}: ${v}`),
    // Shown as text when it is text; otherwise as base64, never silently altered.
    body: Buffer.from(text, 'utf8').equals(body) ? text : null,
    body_base64: Buffer.from(text, 'utf8').equals(body) ? null : h.request.bodyBase64,
    decisions: a.approvals.map((d) => ({ approver: d.approver, at: new Date(d.at).toISOString(), reason: d.reason })),
    rejected:
      a.rejection === null
        ? null
        : { approver: a.rejection.approver, at: new Date(a.rejection.at).toISOString(), reason: a.rejection.reason },
    cancel_reason: a.cancelReason,
    result:
      a.result === null
        ? null
        : { status: a.result.status, error_code: a.result.errorCode, executed_request_id: a.result.executedRequestId },
  }
}
