/**
 * The error catalogue: every way a request can fail, with its HTTP status and stable code.
 * The code is the contract with agents (it appears in problem+json bodies and the
 * `x-corridor-error` header); messages may improve, codes never change meaning.
 */
export const ERROR_CATALOG = {
  // 202: not an error, but answered in the same problem+json shape so every SDK surfaces it.
  approval_pending: { status: 202, title: 'Request held for approval' },
  // 400: the request is malformed or ambiguous; Corridor refuses to guess what it means.
  bad_request: { status: 400, title: 'Malformed request' },
  ambiguous_request: { status: 400, title: 'Ambiguous request refused' },
  invalid_path: { status: 400, title: 'Request path refused' },
  invalid_json: { status: 400, title: 'Request body is not valid JSON' },
  json_too_deep: { status: 400, title: 'Request body nests too deeply' },
  agent_key_misplaced: { status: 400, title: 'Agent credential found outside the API-key header' },
  // 401/403: identity and authorisation.
  identity_missing: { status: 401, title: 'Agent credential missing' },
  identity_invalid: { status: 401, title: 'Agent credential invalid' },
  user_token_invalid: { status: 401, title: 'Delegated user token invalid' },
  agent_suspended: { status: 403, title: 'Agent is suspended' },
  policy_denied: { status: 403, title: 'Request denied by policy' },
  approval_rejected: { status: 403, title: 'Request rejected by an approver' },
  approval_expired: { status: 403, title: 'Approval expired before anyone decided' },
  approval_cancelled: { status: 403, title: 'Approval cancelled' },
  approver_unauthenticated: { status: 401, title: 'Approver credential missing or invalid' },
  approver_not_eligible: { status: 403, title: 'Approver may not decide this request' },
  // 404: nothing is routed there.
  connector_unknown: { status: 404, title: 'No connector at this address' },
  approval_not_found: { status: 404, title: 'No such approval' },
  // 409: the request conflicts with what was held or decided.
  approval_mismatch: { status: 409, title: 'Request differs from the one held for approval' },
  approval_conflict: { status: 409, title: 'Approval is not in a state that allows this' },
  // 408/413/415/431: limits.
  request_timeout: { status: 408, title: 'Request body not received in time' },
  body_too_large: { status: 413, title: 'Request body too large' },
  unsupported_media_type: { status: 415, title: 'Request body type not accepted' },
  headers_too_large: { status: 431, title: 'Too many or too large request headers' },
  // 5xx: Corridor or a dependency cannot do its part; nothing was forwarded unless stated.
  internal: { status: 500, title: 'Internal error' },
  upstream_unreachable: { status: 502, title: 'Upstream unreachable' },
  upstream_bad_response: { status: 502, title: 'Upstream sent an invalid response' },
  approval_outcome_unknown: { status: 502, title: 'Approved request may or may not have reached the upstream' },
  approval_response_too_large: { status: 502, title: 'Approved request ran; its response was too large to keep' },
  identity_unavailable: { status: 503, title: 'Agent identity could not be verified now' },
  credential_unavailable: { status: 503, title: 'Credential could not be issued' },
  audit_unavailable: { status: 503, title: 'Audit sink unavailable' },
  policy_unavailable: { status: 503, title: 'No valid policy loaded' },
  approval_unavailable: { status: 503, title: 'Approval queue unavailable' },
  approval_capacity: { status: 503, title: 'Approval queue is full' },
  upstream_timeout: { status: 504, title: 'Upstream timed out' },
} as const satisfies Record<string, { status: number; title: string }>

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

  constructor(code: ErrorCode, message?: string, options: { cause?: unknown; details?: ProblemDetails; headers?: Record<string, string> } = {}) {
    super(message ?? ERROR_CATALOG[code].title, { cause: options.cause })
    this.code = code
    this.status = ERROR_CATALOG[code].status
    this.details = options.details
    this.headers = options.headers
  }
}

export function isCorridorError(value: unknown): value is CorridorError {
  return value instanceof CorridorError
}
