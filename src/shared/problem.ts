/**
 * RFC 9457 problem+json answers. Every refusal carries a stable `code`, the request id and,
 * for policy denials, the rule, reason and limiting factor, so an agent can correct itself.
 * Nothing from the request is echoed and no stack or cause ever reaches the wire.
 */
import type { ServerResponse } from 'node:http'
import { ERROR_REFERENCE_PATH } from './error-reference.ts'
import { ERROR_CATALOG, type CorridorError } from './errors.ts'

export const PROBLEM_TYPE_BASE = `${ERROR_REFERENCE_PATH}#`

export function problemBody(error: CorridorError, requestId: string): Record<string, unknown> {
  const details = error.details ?? {}
  const body: Record<string, unknown> = {
    // A relative reference: it resolves against the request's own URL, on the Corridor that answered.
    type: PROBLEM_TYPE_BASE + error.code,
    title: ERROR_CATALOG[error.code].title,
    status: error.status,
    code: error.code,
    detail: error.message,
    request_id: requestId,
  }
  if (details.rule !== undefined) body.rule = details.rule
  if (details.reason !== undefined) body.reason = details.reason
  if (details.limitingFactor !== undefined) body.limiting_factor = details.limitingFactor
  if (details.policyVersion !== undefined) body.policy_version = details.policyVersion
  for (const [key, value] of Object.entries(details)) {
    if (!['rule', 'reason', 'limitingFactor', 'policyVersion'].includes(key)) body[key] = value
  }
  // The error envelope most API SDKs (OpenAI, Stripe, Anthropic…) read, so the reason reaches the agent through them.
  body.error = { type: 'corridor_error', code: error.code, message: error.message }
  return body
}

/**
 * problem+json when the agent accepts it (or anything); plain application/json otherwise,
 * because many SDKs parse only bodies labelled application/json (Octokit treats others as bytes).
 */
export function problemContentType(accept: string | undefined): string {
  if (accept === undefined || accept.includes('problem+json') || accept.trim() === '*/*')
    return 'application/problem+json'
  return 'application/json'
}

export function sendProblem(
  res: ServerResponse,
  error: CorridorError,
  requestId: string,
  closeConnection: boolean,
  accept?: string,
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const payload = JSON.stringify(problemBody(error, requestId))
  const headers: Record<string, string | number> = {
    'content-type': problemContentType(accept),
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    'x-corridor-request-id': requestId,
    'x-corridor-error': error.code,
  }
  if (closeConnection) headers.connection = 'close'
  // 503 means a dependency could not do its part (fail closed); it is worth retrying shortly.
  if (error.status === 503) headers['retry-after'] = 5
  if (error.headers !== undefined) Object.assign(headers, error.headers)
  res.writeHead(error.status, headers)
  res.end(payload)
}
