/**
 * The part of forwarding that the live pipeline and the approvals executor share, in this order:
 * the audit gate (nothing leaves unaudited), the connector's credential (issued only now, after
 * the decision; traced with the Vault or OAuth2 calls it took), and the request as it leaves: the
 * canonical request's headers plus the framing, forwarding and trace facts Corridor states itself
 * (never copied from the agent: no X-Forwarded-Host rebuilt from the agent's Host), with the
 * credential placed. What comes back is masked of that credential by the Upstreams (upstreams.ts).
 */
import { assertAuditable, type AuditSink } from '../audit/sink.ts'
import type { CredentialBroker } from '../credentials/broker.ts'
import { injectCredential, type OutgoingParts } from '../credentials/inject.ts'
import type { HeldCredential } from '../credentials/source.ts'
import type { Connector } from '../registry/connectors.ts'
import type { SecretMask } from '../request/secret-mask.ts'
import { noteCredentialIssue, traceparentOf, type RequestTrace } from '../shared/trace-context.ts'

/** Methods whose requests carry a Content-Length even when the body is empty. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH'])

export function outgoingParts(
  method: string,
  headers: readonly string[],
  query: string,
  bodyLength: number,
  remoteAddress: string | null,
  trace: RequestTrace | null,
): OutgoingParts {
  let out: string[]
  if (trace === null) out = headers.slice()
  else {
    // The upstream continues Corridor's trace, its client span as the parent, not the agent's span.
    // A trace Corridor started (the agent sent no valid traceparent; a release) carries none of the
    // agent's tracestate: W3C Trace Context has it discarded with the trace it came with.
    const continued = trace.parentSpanId !== null
    out = []
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string
      if (name !== 'traceparent' && (continued || name !== 'tracestate')) out.push(name, headers[i + 1] as string)
    }
    out.push('traceparent', traceparentOf(trace))
  }
  if (bodyLength > 0 || BODY_METHODS.has(method)) out.push('content-length', String(bodyLength))
  // Identity only: Corridor reads every response to mask the injected credential in it.
  out.push('accept-encoding', 'identity')
  if (remoteAddress !== null) out.push('x-forwarded-for', remoteAddress, 'x-forwarded-proto', 'http')
  return { headers: out, query }
}

export function upstreamTarget(upstreamPath: string, query: string): string {
  return query === '' ? upstreamPath : `${upstreamPath}?${query}`
}

export interface OutboundDeps {
  readonly credentials: CredentialBroker
  readonly audit: AuditSink
}

export interface OutboundRequest {
  readonly method: string
  /** Flat [name, value, …]. */
  readonly headers: readonly string[]
  readonly query: string
  readonly bodyLength: number
  /** The agent's address, for X-Forwarded-For; null for released approvals (the agent is not connected). */
  readonly remoteAddress: string | null
  /** Its trace, when traces are on: the credential issue is recorded, the upstream gets a traceparent. */
  readonly trace: RequestTrace | null
}

export interface Outbound {
  /** Held until the request ends; the caller settles it (settleCredential). */
  readonly credential: HeldCredential | null
  readonly parts: OutgoingParts
  /** What to mask in the response; null when no credential was placed. */
  readonly mask: SecretMask | null
}

/** Throws audit_unavailable or credential_unavailable; on success the caller owns the credential. */
export async function prepareOutbound(
  deps: OutboundDeps,
  connector: Connector,
  agentId: string,
  perRequestLease: boolean,
  request: OutboundRequest,
): Promise<Outbound> {
  assertAuditable(deps.audit)
  // A gathering trace times the issue (its credential span) and logs the calls it takes, without
  // wrapping the issue's promise: a request not traced pays nothing for it.
  const trace = request.trace?.gathering === true ? request.trace : null
  const issueStarted = trace === null ? 0 : performance.now()
  let credential: HeldCredential | null
  try {
    credential = await deps.credentials.issue(connector, agentId, perRequestLease, trace)
  } finally {
    if (trace !== null) noteCredentialIssue(trace, issueStarted, connector.credential.kind)
  }
  const parts = outgoingParts(
    request.method,
    request.headers,
    request.query,
    request.bodyLength,
    request.remoteAddress,
    request.trace,
  )
  if (credential === null) return { credential, parts, mask: null }
  try {
    return { credential, parts, mask: injectCredential(connector.injection, credential, parts) }
  } catch (err) {
    // A template the credential cannot fill: nothing leaves, and the lease is not kept.
    credential.release()
    throw err
  }
}
