/** How the admin APIs answer: JSON, never cached, and failures as problem+json without a request id. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CorridorError, isCorridorError, type ErrorCode } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { problemBody } from '../shared/problem.ts'

export function sendJson(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const payload = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(payload),
  })
  res.end(payload)
}

/**
 * Answers a failed admin call. An unexpected error is logged and answered as `internal`; a caller
 * refused for its credential or its rights (`refusedCodes`) is worth an operator's attention and
 * is logged as such, never with the credential.
 */
export function sendFailure(
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
  log: Logger,
  api: string,
  refusedCodes: readonly ErrorCode[],
): void {
  const error = isCorridorError(err) ? err : new CorridorError('internal', `the ${api} API failed`)
  if (!isCorridorError(err)) log.error({ err }, `${api} API failed`)
  else if (refusedCodes.includes(err.code))
    log.warn(
      {
        code: err.code,
        detail: err.message,
        method: req.method,
        path: new URL(req.url ?? '/', 'http://admin').pathname,
        remote: req.socket.remoteAddress,
      },
      `${api} API refused a caller`,
    )
  if (res.headersSent) return void res.destroy()
  const body = problemBody(error, '-')
  delete body.request_id
  sendJson(res, error.status, body, 'application/problem+json')
}
