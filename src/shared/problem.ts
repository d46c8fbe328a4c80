/**
 * RFC 9457 problem+json answers. Every refusal carries a stable `code`, the request id and,
 * for policy denials, the rule, reason and limiting factor, so an agent can correct itself.
 * Nothing from the request is echoed and no stack or cause ever reaches the wire.
 *
 * Agents read errors through their SDKs, and each SDK builds its error message from its API's
 * own error shape. The problem body therefore also carries those shapes, each saying
 * `corridor <code>: <reason>`: `error.message` (OpenAI, Anthropic, Stripe), `message` (GitHub),
 * `errorMessages` (Jira, Atlassian). Some APIs need a dialect of their own, chosen per connector
 * (`error_format`): Slack's SDK reads only HTTP 200 bodies (`{ok: false, error}`), AWS SDKs
 * parse XML (`<Error><Code>…`), and Notion's SDK reads a body only when its `code` is one of
 * Notion's own.
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
  // The envelopes API SDKs build their error messages from, so the code and reason reach the agent through them.
  const said = sdkMessage(error)
  body.error = { type: 'corridor_error', code: error.code, message: said }
  body.message = said
  body.errorMessages = [said]
  return body
}

/** What an agent's SDK shows as the error message: Corridor's code, then the reason. */
export function sdkMessage(error: CorridorError): string {
  return `corridor ${error.code}: ${error.message}`
}

/** How a connector's SDKs expect errors: problem+json (default), Slack's `{ok: false}` at 200, AWS's XML. */
export type ErrorFormat = 'problem' | 'slack' | 'aws_xml' | 'notion'

/** Notion's error codes by status: its SDK shows a message only under a code it knows (and retries rate_limited). */
function notionCode(status: number): string {
  if (status === 401) return 'unauthorized'
  if (status === 403) return 'restricted_resource'
  if (status === 404) return 'object_not_found'
  if (status === 409) return 'conflict_error'
  if (status === 429) return 'rate_limited'
  if (status === 503) return 'service_unavailable'
  if (status === 504) return 'gateway_timeout'
  if (status >= 500) return 'internal_server_error'
  return 'validation_error'
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }
const xml = (text: string): string => text.replace(/[&<>"']/g, (c) => XML_ESCAPES[c] as string)

/** AWS error codes the SDKs map to their exception classes. */
function awsCode(error: CorridorError): string {
  if (error.status === 401) return 'InvalidAccessKeyId'
  if (error.status === 403) return 'AccessDenied'
  if (error.status === 429 || error.code === 'approval_pending') return 'SlowDown'
  if (error.status >= 500) return 'ServiceUnavailable'
  return 'InvalidRequest'
}

/** The status and body of a refusal in a connector's error format. */
function inFormat(
  error: CorridorError,
  requestId: string,
  format: ErrorFormat,
  accept: string | undefined,
): { status: number; contentType: string; payload: string } {
  switch (format) {
    case 'slack':
      // Slack's SDK raises "An API error occurred: <error>" for {ok: false} at 200, and only a bare
      // status for anything else; a hold keeps its retryable status, so the SDK waits on the approval.
      if (error.code !== 'approval_pending')
        return {
          status: 200,
          contentType: 'application/json; charset=utf-8',
          payload: JSON.stringify({ ...problemBody(error, requestId), ok: false, error: sdkMessage(error) }),
        }
      break
    case 'aws_xml':
      return {
        status: error.status,
        contentType: 'application/xml',
        payload:
          '<?xml version="1.0" encoding="UTF-8"?>\n' +
          `<Error><Code>${awsCode(error)}</Code><Message>${xml(sdkMessage(error))}</Message>` +
          `<CorridorCode>${error.code}</CorridorCode><RequestId>${xml(requestId)}</RequestId></Error>`,
      }
    case 'notion':
      return {
        status: error.status,
        contentType: 'application/json',
        payload: JSON.stringify({
          ...problemBody(error, requestId),
          object: 'error',
          code: notionCode(error.status),
          corridor_code: error.code,
          message: sdkMessage(error),
        }),
      }
    case 'problem':
      break
  }
  return {
    status: error.status,
    contentType: problemContentType(accept),
    payload: JSON.stringify(problemBody(error, requestId)),
  }
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
  format: ErrorFormat = 'problem',
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const { status, contentType, payload } = inFormat(error, requestId, format, accept)
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': Buffer.byteLength(payload),
    'cache-control': 'no-store',
    'x-corridor-request-id': requestId,
    'x-corridor-error': error.code,
  }
  if (closeConnection) headers.connection = 'close'
  // 503 means a dependency could not do its part (fail closed); it is worth retrying shortly.
  if (error.status === 503) headers['retry-after'] = 5
  if (error.headers !== undefined) Object.assign(headers, error.headers)
  res.writeHead(status, headers)
  res.end(payload)
}
