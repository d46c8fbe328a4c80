/**
 * The error catalogue: every way a request can fail, with its HTTP status, stable code, title and
 * what the agent should do about it. docs/errors.md is generated from it (a test keeps them equal),
 * and every problem's `type` points at its section of the same reference, served by Corridor at
 * /_corridor/errors.
 * The code is the contract with agents (it appears in problem+json bodies and the
 * `x-corridor-error` header); messages may improve, codes never change meaning.
 */
export const ERROR_CATALOG = {
  // 202: not an error, but answered in the same problem+json shape so every SDK surfaces it.
  approval_pending: {
    // 503, not 202: every common SDK reads a 2xx as the API's result and carries on; a 503 with
    // Retry-After is raised as an error, and most SDKs retry it on their own, joining the approval.
    status: 503,
    title: 'Request held for approval',
    action:
      'The request waits for a named approver: send the same request again (your SDK may do so by itself after Retry-After) to wait for the result; the same request joins its approval, never opens another. `X-Corridor-Approval: <approval_id>` names it explicitly; the status URL reports where it stands.',
  },
  // 400: the request is malformed or ambiguous; Corridor refuses to guess what it means.
  bad_request: {
    status: 400,
    title: 'Malformed request',
    action: 'Fix the request: it is not well-formed HTTP or JSON/form text Corridor can read. Do not retry unchanged.',
  },
  ambiguous_request: {
    status: 400,
    title: 'Ambiguous request refused',
    action:
      'Send the request in its plain form: one value per field or header, numbers in plain decimal, no `_method`, no matrix parameters, no body on GET/DELETE. The detail names what was ambiguous.',
  },
  invalid_path: {
    status: 400,
    title: 'Request path refused',
    action:
      'Use a plain path: no encoded slashes or backslashes, no `..` above the root, no `;` parameters, UTF-8 escapes only.',
  },
  invalid_json: {
    status: 400,
    title: 'Request body is not valid JSON',
    action: 'Send strict JSON: UTF-8, no duplicate keys, no `__proto__`, no lone surrogates, numbers within ±2^53.',
  },
  json_too_deep: {
    status: 400,
    title: 'Request body nests too deeply',
    action: 'Flatten the body: it nests deeper than the connector allows.',
  },
  agent_key_misplaced: {
    status: 400,
    title: 'Agent credential found outside the API-key header',
    action:
      "Send your Corridor key only as the API key (Authorization or the connector's key header); remove it from other headers, the URL and the body.",
  },
  // 401/403: identity and authorisation.
  identity_missing: {
    status: 401,
    title: 'Agent credential missing',
    action: "Send your Corridor agent credential as the SDK's API key.",
  },
  identity_invalid: {
    status: 401,
    title: 'Agent credential invalid',
    action:
      'Check the credential: the key is unknown or the token is invalid or expired. Ask the platform team for a key.',
  },
  user_token_invalid: {
    status: 401,
    title: 'Delegated user token invalid',
    action: 'Obtain a fresh delegated user token from the identity provider.',
  },
  agent_suspended: {
    status: 403,
    title: 'Agent is suspended',
    action: 'Stop: this agent is suspended by its operators. Retrying will not help.',
  },
  operator_unauthenticated: {
    status: 401,
    title: 'Operator credential missing or invalid',
    action:
      'Operators: set CORRIDOR_OPERATOR_TOKEN to an operator key (cop_…) registered under operators: in agents.yaml.',
  },
  auditor_unauthenticated: {
    status: 401,
    title: 'Auditor credential missing or invalid',
    action:
      'Auditors: send an auditor key (cau_…) registered under auditors: in agents.yaml, or an IdP token of an auditor group.',
  },
  agent_stopped: {
    status: 403,
    title: 'Stopped by an operator',
    action:
      'Stop: an operator stopped this agent, its team, connector, action or user (or everything), or allowed reads only. `stop` says who, why, since when and in what scope. Retrying will not help until they resume it.',
  },
  budget_exceeded: {
    status: 403,
    title: 'Budget exhausted',
    action:
      'Do not retry: this request would take a budget over its maximum for the current window. `limit` names the budget, what remains and when the window resets; ask its owners to raise it, or wait for the reset.',
  },
  loop_detected: {
    status: 403,
    title: 'Request loop stopped',
    action:
      'Stop retrying: the same request was repeated, or the action kept failing, more often than the policy allows. Change the request or fix the cause; `limit` says which guard and when it resets.',
  },
  policy_denied: {
    status: 403,
    title: 'Request denied by policy',
    action:
      'Do not retry the same request: the policy refuses it. The `rule`, `reason` and `limiting_factor` say what would have to change.',
  },
  approval_rejected: {
    status: 403,
    title: 'Request rejected by an approver',
    action: 'Do not retry: an approver rejected this exact request; their reason is in the body.',
  },
  approval_expired: {
    status: 403,
    title: 'Approval expired before anyone decided',
    action: 'Nobody decided in time. Send the request again (with a new Idempotency-Key) to ask anew.',
  },
  approval_cancelled: {
    status: 403,
    title: 'Approval cancelled',
    action: 'The policy or the agent changed while it waited. Send the request again if it is still needed.',
  },
  approver_unauthenticated: {
    status: 401,
    title: 'Approver credential missing or invalid',
    action: 'Approvers: set CORRIDOR_APPROVER_TOKEN to a valid approver key or IdP token.',
  },
  approver_not_eligible: {
    status: 403,
    title: 'Approver may not decide this request',
    action: 'Approvers: this request needs an approver from another group, or you own or asked for it.',
  },
  // 404: nothing is routed there.
  connector_unknown: {
    status: 404,
    title: 'No connector at this address',
    action: 'Address a connector as /<connector>/… or through one of its host names.',
  },
  approval_not_found: {
    status: 404,
    title: 'No such approval',
    action: 'Check the approval id: it does not exist for this agent (or it expired from the store).',
  },
  stop_not_found: {
    status: 404,
    title: 'No such stop',
    action: 'Operators: list the stops in force with `corridor stops`; this one was resumed, expired or never existed.',
  },
  // 409: the request conflicts with what was held or decided.
  approval_mismatch: {
    status: 409,
    title: 'Request differs from the one held for approval',
    action:
      'A different request needs its own approval: resend exactly the held request, or use a new Idempotency-Key.',
  },
  approval_conflict: {
    status: 409,
    title: 'Approval is not in a state that allows this',
    action: 'Approvers: the approval is no longer in a state that allows this decision.',
  },
  // 408/413/415/431: limits.
  request_timeout: {
    status: 408,
    title: 'Request body not received in time',
    action: 'Send the whole request promptly; the body did not arrive before the deadline.',
  },
  body_too_large: {
    status: 413,
    title: 'Request body too large',
    action: "Send a smaller body: it exceeds the connector's limit.",
  },
  unsupported_media_type: {
    status: 415,
    title: 'Request body type not accepted',
    action: 'Send JSON or a form body in UTF-8 with a well-formed Content-Type, uncompressed.',
  },
  headers_too_large: {
    status: 431,
    title: 'Too many or too large request headers',
    action: 'Send fewer or smaller headers.',
  },
  // 429: too fast.
  rate_limited: {
    status: 429,
    title: 'Rate limit reached',
    action:
      'Slow down: retry after the Retry-After seconds. `limit` names the limit and its window; allowed responses carry RateLimit-Policy and RateLimit headers to pace by.',
  },
  // 5xx: Corridor or a dependency cannot do its part; nothing was forwarded unless stated.
  internal: {
    status: 500,
    title: 'Internal error',
    action: 'Retry later; Corridor failed and nothing was forwarded. Operators have the details in the log.',
  },
  upstream_unreachable: {
    status: 502,
    title: 'Upstream unreachable',
    action: 'Retry later with backoff if the action is idempotent; the upstream could not be reached.',
  },
  upstream_certificate_rejected: {
    status: 502,
    title: 'Upstream certificate not trusted',
    action:
      "Report it: the upstream's TLS certificate did not verify (expired, another name, or a CA Corridor does not trust), so nothing was sent to it.",
  },
  upstream_address_refused: {
    status: 502,
    title: 'Upstream address refused',
    action:
      "Report it: the upstream's host resolved to an address Corridor never connects to (link-local, a cloud metadata service, unspecified, multicast or reserved, or Corridor's own listener), so nothing was sent.",
  },
  upstream_bad_response: {
    status: 502,
    title: 'Upstream sent an invalid response',
    action:
      'Report it: the upstream sent a response Corridor cannot relay (or one it could not check for the credential).',
  },
  approval_outcome_unknown: {
    status: 502,
    title: 'Approved request may or may not have reached the upstream',
    action: 'Check the system of record: the approved request was sent at most once and will not be sent again.',
  },
  approval_response_too_large: {
    status: 502,
    title: 'Approved request ran; its response was too large to keep',
    action: 'The approved request ran; its response was too large to keep. Check the system of record for the result.',
  },
  identity_unavailable: {
    status: 503,
    title: 'Agent identity could not be verified now',
    action: "Retry shortly: the identity provider's keys could not be fetched.",
  },
  credential_unavailable: {
    status: 503,
    title: 'Credential could not be issued',
    action: "Retry shortly: the connector's credential could not be issued; nothing was forwarded.",
  },
  audit_unavailable: {
    status: 503,
    title: 'Audit sink unavailable',
    action: 'Retry shortly: the audit trail cannot be written, and Corridor forwards nothing unaudited.',
  },
  audit_store_unavailable: {
    status: 503,
    title: 'Audit store unavailable',
    action:
      'Retry shortly: the PostgreSQL copy of the audit trail cannot be read now (every replica keeps its own file, and shipping catches up).',
  },
  policy_unavailable: {
    status: 503,
    title: 'No valid policy loaded',
    action: 'Retry shortly: no valid policy is loaded.',
  },
  approval_unavailable: {
    status: 503,
    title: 'Approval queue unavailable',
    action:
      'Retry the same request shortly. If details.approval_id is given, the hold may have been recorded under that id: the same request joins it rather than opening another.',
  },
  connection_limit: {
    status: 503,
    title: 'Too many connections',
    action:
      'Reuse connections (HTTP keep-alive) or open fewer at once, then retry: Corridor caps connections in total and per client address.',
  },
  approval_capacity: {
    status: 503,
    title: 'Approval queue is full',
    action: 'Retry shortly: Corridor is holding as many requests as it may; nothing was queued.',
  },
  limits_unavailable: {
    status: 503,
    title: 'Limits could not be counted',
    action:
      'Retry shortly: this action is rate-limited or budgeted and the shared counters could not be reached, so nothing was forwarded.',
  },
  metrics_unavailable: {
    status: 503,
    title: "Not every worker's metrics could be gathered",
    action:
      'Scrape again: one of the workers serving this listener did not send its figures in time, and a scrape shows all of them or none (counters never seem to go back).',
  },
  stops_unavailable: {
    status: 503,
    title: 'Operator stops could not be read',
    action:
      'Retry shortly: Corridor could not read the operator stops in force for too long, and serves only reads until it can.',
  },
  upstream_timeout: {
    status: 504,
    title: 'Upstream timed out',
    action: 'Retry later with backoff if the action is idempotent; the upstream did not answer in time.',
  },
} as const satisfies Record<string, { status: number; title: string; action: string }>

export type ErrorCode = keyof typeof ERROR_CATALOG

/** Extra, agent-safe facts carried into the problem+json body (never secrets, never stacks). */
export interface ProblemDetails {
  rule?: string | null
  reason?: string
  limitingFactor?: string
  policyVersion?: string
  [key: string]: unknown
}

export class CorridorError extends Error {
  override name = 'CorridorError'
  readonly code: ErrorCode
  readonly status: number
  readonly details: ProblemDetails | undefined
  /** Response headers that belong to this answer (Location, Retry-After). */
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(
    code: ErrorCode,
    message?: string,
    options: { cause?: unknown; details?: ProblemDetails; headers?: Record<string, string>; status?: number } = {},
  ) {
    super(message ?? ERROR_CATALOG[code].title, { cause: options.cause })
    this.code = code
    // A connector may answer some codes with another status its SDKs understand (a hold's hold_status).
    this.status = options.status ?? ERROR_CATALOG[code].status
    this.details = options.details
    this.headers = options.headers
  }
}

export function isCorridorError(value: unknown): value is CorridorError {
  return value instanceof CorridorError
}
