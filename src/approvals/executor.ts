/**
 * Releases approved requests: the exact held request, forwarded once. The order matters:
 *
 *   1. re-decide under the policy in force (a changed policy or suspended agent cancels it)
 *   2. the audit sink must take writes and a credential must be issued (a per-request lease
 *      where the action asks for one), before anything is claimed, so that a failure here
 *      leaves the approval approved for the next attempt
 *   3. claim it (approved → executing, atomically: one replica wins)
 *   4. forward, buffer the response, write the execution's audit record
 *   5. store the result (retried until the store takes it), which ends the claim
 *
 * A replica that dies between 3 and 5 leaves the approval executing until its claim deadline. If
 * the connector names the upstream's idempotency header, every send carries the same key and the
 * approval is simply released again; otherwise it becomes `unknown`: sent at most once, never again.
 */
import { randomUUID } from 'node:crypto'
import type { ApprovalsConfig } from '../config/server-config.ts'
import { newAuditRecord, type AuditRecord } from '../audit/record.ts'
import type { AuditSink } from '../audit/sink.ts'
import { credentialFailureCode, type CredentialBroker } from '../credentials/broker.ts'
import { settleCredential } from '../credentials/source.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import { prepareOutbound, upstreamTarget, type Outbound } from '../forwarding/outbound.ts'
import type { Upstreams } from '../forwarding/upstreams.ts'
import { agentResponseHeaders } from '../forwarding/response-headers.ts'
import { noteAddressRefusal } from '../forwarding/address-refusal.ts'
import { isCorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { Approval, ExecutionResult, HeldRequest } from './approval.ts'
import type { ApprovalStore } from './approval-store.ts'
import { traceUpstream, type Tracing } from '../shared/trace-context.ts'
import { approvalLink } from './audit-link.ts'
import { whyNoLongerPermitted } from './recheck.ts'

export interface ExecutorDeps {
  readonly store: ApprovalStore
  readonly config: ApprovalsConfig
  readonly policies: PolicyStore
  readonly credentials: CredentialBroker
  readonly upstreams: Upstreams
  readonly audit: AuditSink
  readonly log: Logger
  readonly now: () => number
  /** Why an operator stop now refuses this request, or null (checked before the claim and again before sending). */
  readonly stoppedBecause: (held: HeldRequest) => string | null
  /** Told when an approval is cancelled by the re-check, or has run. */
  readonly onSettled: (id: string, event: 'cancelled' | 'executed', reason: string | null) => void
  /** Null unless traces are on: a release is a trace of its own, linked to the hold's span. */
  readonly tracer: Tracing | null
}

export class ApprovalExecutor {
  readonly #deps: ExecutorDeps
  readonly #running = new Map<string, Promise<void>>()
  #closing = false

  constructor(deps: ExecutorDeps) {
    this.#deps = deps
  }

  /** Releases the approval if it is approved and nobody else is releasing it; never throws. */
  release(id: string): Promise<void> {
    if (this.#closing) return Promise.resolve()
    const running = this.#running.get(id)
    if (running !== undefined) return running
    const run = this.#release(id)
      .catch((err: unknown) => this.#deps.log.error({ err, approvalId: id }, 'releasing an approved request failed'))
      .finally(() => this.#running.delete(id))
    this.#running.set(id, run)
    return run
  }

  /** Waits for releases in progress (shutdown), at most `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    this.#closing = true
    await Promise.race([Promise.all(this.#running.values()), new Promise((r) => setTimeout(r, timeoutMs).unref())])
  }

  async #release(id: string): Promise<void> {
    const d = this.#deps
    const approval = await d.store.get(id)
    if (approval === null || approval.state !== 'approved') return
    const held = approval.held
    const bundle = d.policies.current
    if (bundle === null) return // no policy to re-check against: stays approved for the next attempt
    const why = d.stoppedBecause(held) ?? whyNoLongerPermitted(bundle, held, d.now())
    if (why !== null) {
      if (await d.store.cancel(id, why, d.now())) d.onSettled(id, 'cancelled', why)
      return
    }
    const connector = bundle.catalog.connectors.get(held.connector)
    if (connector === undefined) return

    const body = Buffer.from(held.request.bodyBase64, 'base64')
    // Where the upstream honours idempotency keys, every send of this approval carries the same one
    // (the agent's own if it sent one), so a send repeated after a crash cannot run twice.
    const idempotency = connector.idempotencyHeader
    const headers = held.request.headers.flat()
    if (idempotency !== null && !held.request.headers.some(([name]) => name === idempotency))
      headers.push(idempotency, held.id)
    const releaseStarted = Date.now()
    const trace = d.tracer?.startRelease(held.trace ?? null) ?? null
    // The outgoing request is complete (audit gate passed, credential placed) before anything is
    // claimed: a failure here leaves the approval approved for the next attempt, not claimed and stuck.
    let outbound: Outbound
    try {
      outbound = await prepareOutbound(d, connector, held.agent, held.perRequestLease, {
        method: held.request.method,
        headers,
        query: held.request.query,
        bodyLength: body.length,
        remoteAddress: null,
        trace,
      })
    } catch (err) {
      d.log.warn(
        {
          err: isCorridorError(err) ? (err.cause ?? err) : err,
          detail: isCorridorError(err) && err.code === 'audit_unavailable' ? err.code : credentialFailureCode(err),
          approvalId: id,
        },
        'approved request not released now (audit or credential unavailable); it stays approved and is retried',
      )
      return
    }
    const { credential, parts: outgoing, mask } = outbound
    const token = randomUUID()
    let claimed = false
    try {
      // A claim outlives the execution bound by as much again before it is considered abandoned.
      claimed = await d.store.claim(id, token, d.now() + 2 * d.config.executionTimeoutMs, idempotency !== null)
    } catch (err) {
      // The claim may still run (a stalled store runs it when it resumes): take it back, queued behind it.
      this.#giveBack(id, token, 'the claim was not confirmed')
      throw err
    } finally {
      if (!claimed) credential?.release()
    }
    if (!claimed) return
    // A stop that arrived while the claim was being taken still wins: nothing is sent.
    const stopped = d.stoppedBecause(held)
    if (stopped !== null) {
      credential?.release()
      if ((await d.store.unclaim(id, token).catch(() => false)) && (await d.store.cancel(id, stopped, d.now())))
        d.onSettled(id, 'cancelled', stopped)
      return
    }

    const record = executionRecord(approval, connector.basePath, d.now())
    if (trace !== null) record.trace_id = trace.traceId
    if (credential !== null) record.credential = { reference: credential.reference, lease_id: credential.leaseId }
    record.approval = { ...approvalLink(approval), state: 'executing' }
    try {
      // Nothing is released unless the trail already says it is about to be.
      d.audit.writeIntent(record, 'release', id)
    } catch (err) {
      credential?.release()
      this.#giveBack(id, token, 'the audit trail cannot be written')
      throw err
    }
    const started = performance.now()
    traceUpstream(trace, started, connector.origin, held.request.upstreamPath)
    let result: ExecutionResult
    try {
      const response = await d.upstreams.call(
        connector,
        {
          method: held.request.method,
          path: upstreamTarget(held.request.upstreamPath, outgoing.query),
          headers: outgoing.headers,
          body: body.length > 0 ? body : null,
        },
        mask,
        d.config.executionTimeoutMs,
        d.config.maxResponseBytes,
      )
      const kept = agentResponseHeaders(response.headers, record.request_id)
      delete kept['x-corridor-request-id']
      result = {
        status: response.status,
        headers: kept,
        bodyBase64: response.body === null ? '' : response.body.toString('base64'),
        errorCode: response.body === null ? 'approval_response_too_large' : null,
        executedRequestId: record.request_id,
        completedAt: d.now(),
      }
      record.upstream_status = response.status
      record.status = response.status
      record.bytes_out = response.bytes
      record.outcome = 'forwarded'
    } catch (err) {
      const code = isCorridorError(err) ? err.code : 'upstream_bad_response'
      result = {
        status: 0,
        headers: {},
        bodyBase64: '',
        errorCode: code,
        executedRequestId: record.request_id,
        completedAt: d.now(),
      }
      record.error_code = isCorridorError(err) ? err.code : null
      record.error_detail =
        noteAddressRefusal(err, d.log, { approvalId: id, requestId: record.request_id }) ?? record.error_detail
      record.outcome = code === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error'
      record.status = isCorridorError(err) ? err.status : 502
    }
    record.duration_ms = record.upstream_ms = Math.round((performance.now() - started) * 1000) / 1000
    record.approval = { ...approvalLink(approval), state: 'executed', executed_request_id: record.request_id }
    d.audit.write(record)
    const releaseMs = Date.now() - releaseStarted
    if (credential !== null)
      settleCredential(credential, result.status, d.log, { approvalId: id, requestId: record.request_id })
    try {
      await this.#storeResult(id, token, result)
      d.onSettled(id, 'executed', null)
    } finally {
      // Telemetry last, so that the result is stored whatever it does; recorded even if storing failed.
      // The release's span covers it from the credential on; the record times the upstream call.
      if (trace !== null) d.tracer?.finish(trace, { ...record, duration_ms: releaseMs })
    }
  }

  /**
   * Returns a claim this replica holds but never acted on, so that the approval is released later
   * rather than swept to `unknown`. Retried briefly: the store may be stalled now.
   */
  #giveBack(id: string, token: string, why: string): void {
    const d = this.#deps
    const attempt = async (): Promise<void> => {
      for (let delay = 100; delay <= 1_600; delay *= 2) {
        try {
          if (await d.store.unclaim(id, token))
            d.log.warn({ approvalId: id }, `claim given back (${why}); nothing was sent`)
          return
        } catch {
          await new Promise((r) => setTimeout(r, delay))
        }
      }
      d.log.error(
        { approvalId: id },
        `claim could not be given back (${why}); nothing was sent, the sweep will settle it`,
      )
    }
    void attempt()
  }

  /** The upstream has answered: keep trying to record that until the store takes it or the claim is long dead. */
  async #storeResult(id: string, token: string, result: ExecutionResult): Promise<void> {
    const d = this.#deps
    const giveUpAt = d.now() + d.config.keepResultsMs
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      try {
        if (!(await d.store.complete(id, token, result)))
          d.log.error({ approvalId: id }, 'the result of a released request was refused by the store (claim lost)')
        return
      } catch (err) {
        // Shutting down, or the claim is long dead: the approval will read as unknown (or be released again).
        if (this.#closing || d.now() > giveUpAt) {
          d.log.error(
            { err, approvalId: id },
            'the result of a released request could not be stored; the approval will read as unknown',
          )
          return
        }
        await new Promise((r) => setTimeout(r, delay))
      }
    }
  }
}

function executionRecord(approval: Approval, basePath: string, nowMs: number): AuditRecord {
  const h = approval.held
  const record = newAuditRecord(randomUUID(), nowMs, h.request.method, h.request.target)
  record.path = h.request.upstreamPath.slice(basePath.length) || '/'
  record.agent = h.agent
  record.owner = h.owner
  record.tier = h.tier
  record.user = h.user
  record.user_groups = h.userGroups
  record.intent = h.intent
  record.task_id = h.taskId
  record.connector = h.connector
  record.action = h.action
  record.risk = h.risk
  record.query = h.request.query
  record.decision = 'require_approval'
  record.rule = h.rule
  record.reason = h.reason
  record.policy_version = h.policyVersion
  record.approvers = h.approverGroups
  record.bytes_in = Buffer.byteLength(h.request.bodyBase64, 'base64')
  return record
}
