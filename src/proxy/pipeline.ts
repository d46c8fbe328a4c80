/**
 * The request pipeline, in the order it runs. Every stage either hands the next one what it
 * needs or throws a CorridorError; the audit record is filled in along the way and written
 * exactly once, when the agent's response closes, however the request ended.
 *
 *   1. inbound checks   framing, header count, duplicates, hop-by-hop tricks     (inbound.ts)
 *   2. target & route   canonical path once; connector by Host or path prefix    (request-target.ts, route.ts)
 *   3. identity         agent credential → registered agent; delegated user      (identity/)
 *   4. body             bounded read; strict JSON when it is JSON                  (request-body.ts)
 *   5. decision         pure policy evaluation over the request facts             (policy/evaluate.ts)
 *                       require_approval: held, and the connection waits for a decision (approval-gate.ts);
 *                       released requests are forwarded once by the approvals executor
 *   6. audit gate       nothing is forwarded while the audit sink is failing      (audit/sink.ts)
 *   7. credential       the connector's credential, placed by its template        (credentials/)
 *   8. forward          exactly the canonical request, streamed back              (forward.ts)
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { requestDigest, type HeldHttpRequest, type HeldRequest } from '../approvals/approval.ts'
import type { ApprovalService } from '../approvals/approval-service.ts'
import { approvalsRequired } from '../approvals/eligibility.ts'
import { newAuditRecord, recordDecision, withoutKeys, type AuditRecord, type Outcome } from '../audit/record.ts'
import { assertAuditable, type AuditSink } from '../audit/sink.ts'
import { credentialFailureCode, type CredentialBroker } from '../credentials/broker.ts'
import { SecretMask } from '../request/secret-mask.ts'
import { settleCredential, type HeldCredential } from '../credentials/source.ts'
import type { Identifier } from '../identity/identify.ts'
import { bucketFor } from '../policy/compile.ts'
import type { Decision } from '../policy/decision.ts'
import { evaluate } from '../policy/evaluate.ts'
import { requestFacts, type DelegatedUser } from '../policy/facts.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import type { Agent } from '../registry/agents.ts'
import { canonicalRequest, routeTarget, routeTemplate, type CanonicalRequest } from '../request/canonical-request.ts'
import { FollowUps } from '../forwarding/follow-ups.ts'
import { noteAddressRefusal } from '../forwarding/address-refusal.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import { prepareOutbound, upstreamTarget, type Outbound } from '../forwarding/outbound.ts'
import { parseRequestTarget } from '../request/target.ts'
import { CorridorError, isCorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { approvalStatusBody, holdForApproval, resumeApproval } from './approval-gate.ts'
import { APPROVAL_STATUS_PREFIX } from '../shared/corridor-paths.ts'
import { ClientAbortedError } from '../shared/client-aborted.ts'
import type { Upstreams } from '../forwarding/upstreams.ts'
import { assertSingleHeader, inspectInbound, type InboundLimits } from './inbound.ts'
import { parserErrorOf, parserRefusal } from './parser-refusals.ts'
import { ERROR_REFERENCE_PATH, errorReferenceHtml } from '../shared/error-reference.ts'
import type { Lifecycle } from '../shared/lifecycle.ts'
import { sendProblem } from '../shared/problem.ts'
import { readBody } from './request-body.ts'
import type { RuntimeControls } from '../controls/runtime-controls.ts'
import type { Metrics } from '../telemetry/metrics.ts'
import { traceUpstream, type RequestTrace, type Tracing } from '../shared/trace-context.ts'
import type { Admission } from '../controls/limiter.ts'
import type { Stop, StopSubject } from '../controls/stop.ts'
import { stoppedError } from '../controls/stop-board.ts'
import {
  counterOps,
  LIMIT_RULE_PREFIX,
  UnreadableAmount,
  type CompiledLimit,
  type CounterOp,
  type LimitReport,
} from '../policy/limits.ts'
import type { RequestFacts } from '../policy/facts.ts'

export interface PipelineDeps {
  readonly policies: PolicyStore
  readonly identifier: Identifier
  readonly credentials: CredentialBroker
  readonly upstreams: Upstreams
  readonly audit: AuditSink
  readonly log: Logger
  readonly limits: InboundLimits
  readonly now: () => number
  readonly approvals: ApprovalService
  readonly approvalWaitMs: number
  readonly approvalExpiresMs: number
  readonly lifecycle: Lifecycle
  readonly controls: RuntimeControls
  /** Null when metrics are off (`telemetry.metrics: false`). */
  readonly metrics: Metrics | null
  /** Null unless traces are on (`telemetry.traces`). */
  readonly tracer: Tracing | null
}

/** The status URL is Corridor's own: it takes the agent key in Authorization, or in X-Api-Key as many SDKs send it. */
const STATUS_KEY_HEADER = 'x-api-key'
const MAX_INTENT = 500
const MAX_TASK_ID = 128

export function createPipeline(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const userHeader = deps.identifier.userHeader
  const extraSingletons: readonly string[] = userHeader === null ? [] : [userHeader]
  return (req, res) => {
    const startedAt = deps.now()
    const started = performance.now()
    const record = newAuditRecord(randomUUID(), startedAt, req.method ?? '', req.url ?? '')
    const trace = deps.tracer?.start(req.headers.traceparent) ?? null
    if (trace !== null) record.trace_id = trace.traceId
    const lease: RequestHolds = { credential: null, admission: null, untrack: null, cutBy: null, trace }
    res.once('close', () => finish(deps, req, record, res, started, lease))
    handle(deps, extraSingletons, req, res, record, startedAt, lease).catch((err: unknown) =>
      refuse(deps, req, res, record, err),
    )
  }
}

/** What a request holds, so that finish() can release it however the request ended. */
interface RequestHolds {
  credential: HeldCredential | null
  /** The limit counters it took (a budget reservation, a concurrency slot). */
  admission: Admission | null
  /** Takes it off the list of requests a stop can cut. */
  untrack: (() => void) | null
  /** The stop that cut it in flight. */
  cutBy: Stop | null
  /** Its place in a trace, when traces are on. */
  trace: RequestTrace | null
}

async function handle(
  deps: PipelineDeps,
  extraSingletons: readonly string[],
  req: IncomingMessage,
  res: ServerResponse,
  record: AuditRecord,
  now: number,
  lease: RequestHolds,
): Promise<void> {
  // 1. Inbound checks.
  inspectInbound(req, deps.limits, extraSingletons)

  // 2. Canonical target and route.
  const bundle = deps.policies.current
  if (bundle === null) throw new CorridorError('policy_unavailable', 'no valid policy has been loaded')
  const method = req.method as string
  const parsedTarget = parseRequestTarget(req.url ?? '')
  if (parsedTarget.path.startsWith(APPROVAL_STATUS_PREFIX))
    return approvalStatus(deps, req, res, record, parsedTarget.path.slice(APPROVAL_STATUS_PREFIX.length), now)
  if (parsedTarget.path === ERROR_REFERENCE_PATH) return serveErrorReference(req, res, record)
  const target = routeTarget(bundle.catalog, req.headers.host, method, parsedTarget)
  const { connector, action } = target
  record.connector = connector.id
  record.path = withoutKeys(target.path)
  record.action = action?.name ?? null
  record.risk = action?.risk ?? null
  if (lease.trace?.gathering === true) lease.trace.route = routeTemplate(target)
  if (connector.agentKeyHeader !== null) assertSingleHeader(req, connector.agentKeyHeader)
  if (
    connector.injection.kind === 'query' &&
    target.query.pairs.some(([name]) => name === (connector.injection as { param: string }).param)
  ) {
    // The upstream might read the agent's copy instead of Corridor's.
    throw new CorridorError(
      'ambiguous_request',
      `query parameter '${connector.injection.param}' is where Corridor places this connector's credential; do not send it`,
    )
  }

  // 3. Identity: the agent, and the user it acts for.
  const { agent, presented } = await deps.identifier.agent(req.headers, connector.agentKeyHeader, bundle, now)
  record.agent = agent.id
  record.owner = agent.owner
  record.tier = agent.tier
  const user = await deps.identifier.user(req.headers, now)
  if (user !== null) {
    record.user = user.id
    record.user_groups = user.groups
  }
  // An operator stop wins over everything after identity; a request it lets through can still be cut by a later one.
  const subject: StopSubject = {
    agent: agent.id,
    owner: agent.owner,
    connector: connector.id,
    action: action?.name ?? null,
    risk: action?.risk ?? null,
    user: user?.id ?? null,
  }
  try {
    deps.controls.board.check(subject)
  } catch (err) {
    if (isCorridorError(err)) record.reason = err.message
    throw err
  }
  // A stop that comes while this request is on its way: refused at the next step if nothing was sent
  // yet; cut off if the upstream is already answering (what was sent cannot be unsent).
  lease.untrack = deps.controls.inFlight.add(subject, (stop) => {
    lease.cutBy = stop
    if (record.outcome === 'forwarded') res.destroy()
  })
  record.intent = headerText(req.headers['x-corridor-intent'], MAX_INTENT)
  record.task_id = headerText(req.headers['x-corridor-task-id'], MAX_TASK_ID)

  // 4. Body, then the canonical request: what the policy reads is what is forwarded.
  const body = await readBody(req, connector.limits.maxBodyBytes)
  record.bytes_in = body.length
  let request: CanonicalRequest
  try {
    request = canonicalRequest({
      target,
      rawHeaders: req.rawHeaders,
      body,
      agentKey: presented,
      readsBody: action !== null && bucketFor(bundle.policy, connector.id, action.name).readsBody,
    })
  } catch (err) {
    // The key was found in the request: it must not reach the audit trail through the path either.
    if (isCorridorError(err) && err.code === 'agent_key_misplaced')
      record.path = new SecretMask([presented]).text(record.path)
    throw err
  }
  record.query = withoutKeys(request.queryString)

  // A retry that names its approval is answered from that approval (the release re-checks the policy).
  const approvalId = headerText(req.headers['x-corridor-approval'], 100)
  if (approvalId !== null) {
    assertAuditable(deps.audit)
    if (agent.status === 'suspended') throw new CorridorError('agent_suspended', `agent '${agent.id}' is suspended`)
    return resumeApproval(
      deps.approvals,
      { waitMs: deps.approvalWaitMs, status: connector.holdStatus, followUps: followUpsFor(req, bundle.catalog) },
      res,
      record,
      approvalId,
      agent.id,
      requestDigest(connector.id, heldHttpRequest(request, req.headers.host), connector.perAttemptHeaders),
    )
  }

  // 5. Decision, then the limits that count the action (policy.yaml `limits:`).
  const facts = requestFacts(request, agent, user, now)
  let decision = evaluate(bundle.policy, bundle.version, facts)
  recordDecision(record, decision)
  const limits =
    action === null || decision.effect !== 'allow'
      ? NO_LIMITS
      : bucketFor(bundle.policy, connector.id, action.name).limits
  if (limits.length > 0) {
    const admission = await admit(deps, limits, facts, request, req.headers.host, record)
    if (admission.hold !== null) {
      decision = {
        ...decision,
        effect: 'require_approval',
        rule: LIMIT_RULE_PREFIX + admission.hold.limit,
        reason: admission.hold.reason,
        approvers: admission.hold.approvers,
        approvals: 1,
        limitingFactor: null,
      }
      recordDecision(record, decision)
    } else {
      lease.admission = admission
      for (const [name, value] of Object.entries(admission.headers)) res.setHeader(name, value)
    }
  }
  const details = {
    rule: decision.rule,
    reason: decision.reason,
    limitingFactor: decision.limitingFactor ?? undefined,
    policyVersion: decision.policyVersion,
  }
  if (decision.effect === 'deny') {
    throw new CorridorError(
      decision.limitingFactor === 'agent_status' ? 'agent_suspended' : 'policy_denied',
      decision.reason,
      { details },
    )
  }
  if (decision.effect === 'require_approval') {
    // A hold is an action too: it is not taken unless the trail already says it is about to be.
    if (lease.cutBy !== null) throw stoppedError(lease.cutBy)
    const held = heldRequest(deps, request, req.headers.host, record, agent, user, decision, now, lease.trace)
    deps.audit.writeIntent(record, 'hold', held.id)
    return holdForApproval(
      deps.approvals,
      { waitMs: deps.approvalWaitMs, status: connector.holdStatus, followUps: followUpsFor(req, bundle.catalog) },
      res,
      record,
      held,
      headerText(req.headers['idempotency-key'], 255),
    )
  }

  // 6–7. Audit gate, then the credential, issued only now that the request is allowed (forwarding/outbound.ts).
  let outbound: Outbound
  const issueStarted = performance.now()
  try {
    outbound = await prepareOutbound(deps, connector, agent.id, action?.perRequestLease ?? false, {
      method,
      headers: request.headers,
      query: request.queryString,
      bodyLength: request.body.length,
      remoteAddress: req.socket.remoteAddress ?? null,
      trace: lease.trace,
    })
  } catch (err) {
    if (isCorridorError(err) && err.code === 'credential_unavailable') {
      // Operators get the why (Vault sealed, which variable or file); the agent only learns that the credential is unavailable.
      record.error_detail = credentialFailureCode(err)
      deps.log.warn(
        { err: err.cause ?? err, detail: record.error_detail, connector: connector.id, requestId: record.request_id },
        'credential unavailable; request not forwarded',
      )
    }
    throw err
  }
  const issueEnded = performance.now()
  deps.metrics?.credentialIssued(connector.id, connector.credential.kind, (issueEnded - issueStarted) / 1000)
  const { credential, parts: outgoing, mask } = outbound
  lease.credential = credential
  if (res.destroyed) {
    // The agent left while the credential was being issued: finish() may already have run, so release it here (release is idempotent).
    credential?.release()
    throw new ClientAbortedError()
  }
  if (lease.cutBy !== null) throw stoppedError(lease.cutBy) // finish() releases the credential
  if (credential !== null) record.credential = { reference: credential.reference, lease_id: credential.leaseId }
  // Nothing leaves unless the trail already says it is about to (finish() releases the credential if this throws).
  deps.audit.writeIntent(record, 'forward', null)

  // 8. Forward exactly the canonical request; the response is masked of the credential placed in it.
  const upstreamStarted = performance.now()
  traceUpstream(lease.trace, upstreamStarted, connector.origin, request.upstreamPath)
  record.outcome = 'forwarded' // finish() turns it into client_aborted if the response does not complete
  const followUps = followUpsFor(req, bundle.catalog)
  try {
    await deps.upstreams.forward(
      connector,
      {
        method,
        path: upstreamTarget(request.upstreamPath, outgoing.query),
        headers: outgoing.headers,
        body: request.body.length > 0 ? request.body : null,
      },
      mask,
      res,
      record.request_id,
      (progress) => {
        record.upstream_status = progress.status === 0 ? null : progress.status
        record.bytes_out = progress.bytesOut
        record.upstream_ms = Math.round((performance.now() - upstreamStarted) * 1000) / 1000
      },
      followUps,
    )
    for (const finding of followUps?.findings ?? [])
      deps.log.warn(
        { requestId: record.request_id, connector: connector.id, key: finding.key, origin: finding.origin },
        'the upstream handed the agent a follow-up URL outside Corridor: calling it would bypass policy and send the agent key there; declare a connector for that origin',
      )
  } catch (err) {
    // Operators get the host and the address it resolved to (a rebound name, a poisoned cache); the agent, the kind.
    record.error_detail =
      noteAddressRefusal(err, deps.log, { connector: connector.id, requestId: record.request_id }) ??
      record.error_detail
    record.outcome =
      err instanceof ClientAbortedError
        ? 'client_aborted'
        : isCorridorError(err) && err.code === 'upstream_timeout'
          ? 'upstream_timeout'
          : 'upstream_error'
    throw err
  }
}

/** Upstream URLs in an answer become Corridor URLs at the address the agent used (follow-ups.ts). */
function followUpsFor(req: IncomingMessage, catalog: ConnectorCatalog): FollowUps | null {
  const host = req.headers.host
  if (typeof host !== 'string' || !/^[A-Za-z0-9.:[\]-]+$/.test(host)) return null
  const scheme = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http'
  return new FollowUps(catalog, `${scheme}://${host}`)
}

/** Answers a refused or failed request; the outcome it records depends on how far it got. */
function refuse(
  deps: PipelineDeps,
  req: IncomingMessage,
  res: ServerResponse,
  record: AuditRecord,
  err: unknown,
): void {
  if (err instanceof ClientAbortedError) {
    record.outcome = 'client_aborted'
    res.destroy()
    return
  }
  let error: CorridorError
  if (isCorridorError(err)) error = err
  else {
    deps.log.error({ err, requestId: record.request_id }, 'unexpected error in the request pipeline')
    error = new CorridorError('internal', 'Corridor failed to handle this request; nothing was forwarded')
  }
  record.error_code = error.code
  if (record.outcome === 'rejected') record.outcome = outcomeFor(error)
  // A request refused before its body was read must not leave that body on a kept-alive connection.
  // In the error shape of the connector's SDKs, once the request is known to be for one.
  const format =
    record.connector === null
      ? 'problem'
      : (deps.policies.current?.catalog.connectors.get(record.connector)?.errorFormat ?? 'problem')
  sendProblem(res, error, record.request_id, !req.complete, req.headers.accept, format)
}

/** The outcome a refusal records; every code is listed, so a new one cannot fall into a default. */
function outcomeFor(error: CorridorError): Outcome {
  switch (error.code) {
    case 'policy_denied':
    case 'agent_suspended':
    case 'agent_stopped':
    case 'budget_exceeded':
    case 'loop_detected':
    case 'approval_rejected':
    case 'approval_expired':
    case 'approval_cancelled':
      return 'denied'
    case 'approval_pending':
      return 'held'
    case 'approval_unavailable':
    case 'limits_unavailable':
    case 'stops_unavailable':
    case 'approval_capacity':
    case 'connection_limit':
    case 'approval_outcome_unknown':
    case 'credential_unavailable':
    case 'audit_unavailable':
    case 'audit_store_unavailable':
    case 'metrics_unavailable':
    case 'policy_unavailable':
    case 'identity_unavailable':
    case 'internal':
      return 'unavailable'
    case 'bad_request':
    case 'ambiguous_request':
    case 'invalid_path':
    case 'invalid_json':
    case 'json_too_deep':
    case 'agent_key_misplaced':
    case 'identity_missing':
    case 'identity_invalid':
    case 'user_token_invalid':
    case 'approver_unauthenticated':
    case 'approver_not_eligible':
    case 'connector_unknown':
    case 'approval_not_found':
    case 'stop_not_found':
    case 'operator_unauthenticated':
    case 'auditor_unauthenticated':
    case 'approval_mismatch':
    case 'approval_conflict':
    case 'request_timeout':
    case 'body_too_large':
    case 'unsupported_media_type':
    case 'headers_too_large':
    case 'rate_limited':
    // A stored failure of a released approval, replayed to the agent: the release's own record has the upstream outcome.
    case 'upstream_unreachable':
    case 'upstream_bad_response':
    case 'upstream_certificate_rejected':
    case 'upstream_address_refused':
    case 'upstream_timeout':
    case 'approval_response_too_large':
      return 'rejected'
  }
}

function finish(
  deps: PipelineDeps,
  req: IncomingMessage,
  record: AuditRecord,
  res: ServerResponse,
  started: number,
  lease: RequestHolds,
): void {
  record.status = res.statusCode
  record.duration_ms = Math.round((performance.now() - started) * 1000) / 1000
  const parserError = parserErrorOf(req)
  if (parserError !== null && record.error_code === null) {
    // Node's parser cut the body short (a bad chunk, a body too slow): the connection is gone before the refusal could be sent.
    const refusal = parserRefusal(parserError)
    record.error_code = refusal.code
    record.error_detail = parserError
    record.status = refusal.status
  }
  if (
    !res.writableFinished &&
    (record.outcome === 'forwarded' || (record.outcome === 'rejected' && record.error_code === null))
  )
    // Cut by Corridor when its shutdown grace ran out, or left by the agent.
    record.outcome = deps.lifecycle.phase === 'cutting' ? 'shutdown' : 'client_aborted'
  // The record first: nothing a credential hook does can cost the request its audit record.
  if (lease.cutBy !== null && record.error_code !== 'agent_stopped') {
    // Cut while the upstream was answering (a request refused before it was sent records agent_stopped as denied).
    record.outcome = 'stopped'
    record.error_code = 'agent_stopped'
    record.error_detail = lease.cutBy.id
  }
  deps.audit.write(record)
  lease.untrack?.()
  lease.admission?.settle(record.upstream_status)
  if (lease.credential !== null)
    settleCredential(lease.credential, record.upstream_status, deps.log, { requestId: record.request_id })
  // Telemetry last: whatever it does, the request's slot, budget and credential are already given back.
  deps.metrics?.observe(record)
  if (lease.trace !== null) deps.tracer?.finish(lease.trace, record)
}

const NO_LIMITS: readonly CompiledLimit[] = []

/** Counts the request against its limits; a budget that cannot read its amount refuses it. */
async function admit(
  deps: PipelineDeps,
  limits: readonly CompiledLimit[],
  facts: RequestFacts,
  request: CanonicalRequest,
  host: string | undefined,
  record: AuditRecord,
): Promise<Admission> {
  let ops: CounterOp[]
  try {
    ops = counterOps(limits, facts, () =>
      requestDigest(request.connector.id, heldHttpRequest(request, host), request.connector.perAttemptHeaders),
    )
  } catch (err) {
    if (err instanceof UnreadableAmount)
      throw new CorridorError('policy_denied', err.message, { details: { reason: err.message } })
    throw err
  }
  if (ops.length === 0) return NOT_COUNTED
  const admission = await deps.controls.limiter.admit(ops, record.request_id).catch((err: unknown) => {
    if (isCorridorError(err) && err.details?.limit !== undefined) record.limits = [err.details.limit as LimitReport]
    throw err
  })
  record.limits = admission.reports
  return admission
}

const NOT_COUNTED: Admission = { reports: [], headers: {}, hold: null, settle: () => {} }

/** The page every problem's `type` points at: public, static, and audited like every request. */
function serveErrorReference(req: IncomingMessage, res: ServerResponse, record: AuditRecord): void {
  if (req.method !== 'GET' && req.method !== 'HEAD')
    throw new CorridorError('bad_request', 'the error reference is read with GET')
  record.outcome = 'served'
  const page = (errorReferencePage ??= Buffer.from(errorReferenceHtml()))
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': page.length,
    'cache-control': 'public, max-age=3600',
    'x-corridor-request-id': record.request_id,
  })
  res.end(req.method === 'HEAD' ? undefined : page)
}

let errorReferencePage: Buffer | undefined

/** The agent asking where its approval stands (no waiting); only the agent that was held may ask. */
async function approvalStatus(
  deps: PipelineDeps,
  req: IncomingMessage,
  res: ServerResponse,
  record: AuditRecord,
  rawId: string,
  now: number,
): Promise<void> {
  if (req.method !== 'GET') throw new CorridorError('bad_request', 'approval status is read with GET')
  let id: string
  try {
    id = decodeURIComponent(rawId)
  } catch {
    throw new CorridorError('approval_not_found', 'no such approval')
  }
  const bundle = deps.policies.current
  if (bundle === null) throw new CorridorError('policy_unavailable')
  // Who asks is settled before the store is read: an unidentified caller learns nothing of which ids exist.
  const { agent } = await deps.identifier.agent(req.headers, STATUS_KEY_HEADER, bundle, now)
  record.agent = agent.id
  const approval = await deps.approvals.get(id)
  if (approval === null || agent.id !== approval.held.agent)
    throw new CorridorError('approval_not_found', `no approval '${id}' for this agent`)
  record.connector = approval.held.connector
  record.outcome = 'held'
  const payload = JSON.stringify(approvalStatusBody(approval))
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    'x-corridor-request-id': record.request_id,
  })
  res.end(payload)
}

/** The request as it would be forwarded (before framing and the credential), for holding or matching a hold. */
function heldHttpRequest(request: CanonicalRequest, host: string | undefined): HeldHttpRequest {
  return {
    method: request.method,
    target: upstreamTarget(request.targetPath, request.queryString),
    host: host ?? null,
    upstreamPath: request.upstreamPath,
    query: request.queryString,
    headers: pairsOf(request.headers),
    bodyBase64: request.body.toString('base64'),
  }
}

function pairsOf(flat: readonly string[]): [string, string][] {
  const pairs: [string, string][] = []
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i] as string, flat[i + 1] as string])
  return pairs
}

function heldRequest(
  deps: PipelineDeps,
  request: CanonicalRequest,
  host: string | undefined,
  record: AuditRecord,
  agent: Agent,
  user: DelegatedUser | null,
  decision: Decision,
  now: number,
  trace: RequestTrace | null,
): HeldRequest {
  const http = heldHttpRequest(request, host)
  const risk = request.action?.risk ?? null
  return {
    id: 'apr_' + randomUUID(),
    heldRequestId: record.request_id,
    digest: requestDigest(request.connector.id, http, request.connector.perAttemptHeaders),
    request: http,
    agent: agent.id,
    owner: agent.owner,
    tier: agent.tier,
    user: user?.id ?? null,
    userGroups: user?.groups ?? null,
    intent: record.intent,
    taskId: record.task_id,
    connector: request.connector.id,
    action: request.action?.name ?? null,
    risk,
    rule: decision.rule,
    reason: decision.reason,
    policyVersion: decision.policyVersion,
    approverGroups: decision.approvers,
    required: approvalsRequired(decision.approvals, risk),
    perRequestLease: request.action?.perRequestLease ?? false,
    createdAt: now,
    expiresAt: now + deps.approvalExpiresMs,
    trace: trace === null ? null : { traceId: trace.traceId, spanId: trace.serverSpanId, sampled: trace.sampled },
  }
}

function headerText(value: string | string[] | undefined, max: number): string | null {
  if (typeof value !== 'string' || value === '') return null
  return value.length > max ? value.slice(0, max) : value
}
