/**
 * Requests Node's HTTP parser refuses before Corridor sees them (smuggling framing, bare LF,
 * obs-fold, NUL bytes, lower-case or unknown methods, HTTP/2 prefaces, header caps, CONNECT)
 * still get a problem+json answer where the connection allows one, and exactly one audit record.
 * A parser error in the middle of a request's body belongs to that request: it is marked on the
 * request, and the pipeline reports it as the malformed body it is.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { newAuditRecord } from '../audit/record.ts'
import type { AuditSink } from '../audit/sink.ts'
import type { Metrics } from '../telemetry/metrics.ts'
import { CorridorError, type ErrorCode } from '../shared/errors.ts'
import { problemBody } from '../shared/problem.ts'

const PARSER_ERROR = Symbol('corridor.parserError')

export interface ParserRefusalDeps {
  readonly audit: AuditSink
  readonly now: () => number
  readonly metrics: Metrics | null
}

/** The parser error that cut a request short on this socket, if any. */
export function parserErrorOf(req: IncomingMessage): string | null {
  return (req as IncomingMessage & { [PARSER_ERROR]?: string })[PARSER_ERROR] ?? null
}

const TIMEOUTS = new Set(['ERR_HTTP_REQUEST_TIMEOUT', 'ERR_HTTP_HEADERS_TIMEOUT'])

/** What a parser error that cut a request short means for that request: too slow, or malformed. */
export function parserRefusal(code: string): CorridorError {
  return TIMEOUTS.has(code)
    ? new CorridorError('request_timeout', 'the request did not arrive in time')
    : new CorridorError('bad_request', 'the request body is malformed (chunked framing)')
}

export function createParserRefusals(deps: ParserRefusalDeps): {
  onClientError: (err: Error & { code?: string }, socket: Duplex) => void
  onConnect: (req: IncomingMessage, socket: Duplex) => void
} {
  const refuse = (
    socket: Duplex,
    method: string,
    target: string,
    code: ErrorCode,
    message: string,
    detail: string,
  ): void => {
    const record = newAuditRecord(randomUUID(), deps.now(), method, target)
    const error = new CorridorError(code, message)
    record.error_code = code
    record.error_detail = detail
    record.status = error.status
    record.duration_ms = 0
    deps.audit.write(record)
    deps.metrics?.observe(record)
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const payload = JSON.stringify(problemBody(error, record.request_id))
    socket.end(
      `HTTP/1.1 ${error.status} ${error.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `content-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\ncache-control: no-store\r\n` +
        `x-corridor-request-id: ${record.request_id}\r\nx-corridor-error: ${code}\r\nconnection: close\r\n\r\n${payload}`,
    )
  }

  return {
    onClientError(err, socket) {
      const code = err.code ?? 'unknown'
      // A client that went away is not a request.
      if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED') {
        socket.destroy()
        return
      }
      const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage
      if (inFlight) {
        // Mid-request (a bad chunk, or a body too slow): the request's own record reports it (the
        // pipeline reads the mark). Once the pipeline has had its turn, an answer it already
        // started is flushed and the connection closed; one still reading the body cannot be
        // answered, and is cut off rather than left waiting.
        ;(inFlight.req as IncomingMessage & { [PARSER_ERROR]?: string })[PARSER_ERROR] = code
        setImmediate(() => {
          if (inFlight.headersSent) socket.end()
          else socket.destroy()
        })
        return
      }
      if (code === 'HPE_HEADER_OVERFLOW')
        return refuse(socket, '', '', 'headers_too_large', 'the request headers exceed the size limit', code)
      if (TIMEOUTS.has(code))
        return refuse(socket, '', '', 'request_timeout', 'the request did not arrive in time', code)
      refuse(
        socket,
        '',
        '',
        FRAMING.has(code) ? 'ambiguous_request' : 'bad_request',
        `the request is not well-formed HTTP/1.1 (${code})`,
        code,
      )
    },
    onConnect(req, socket) {
      refuse(
        socket,
        'CONNECT',
        req.url ?? '',
        'bad_request',
        'CONNECT is not supported: Corridor is a gateway, not a forward proxy',
        'connect',
      )
    },
  }
}

/** Parser errors that are request-smuggling shapes rather than plain garbage. */
const FRAMING = new Set([
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_CHUNK_EXTENSIONS_OVERFLOW',
  'HPE_LF_EXPECTED',
  'HPE_CR_EXPECTED',
  'HPE_INVALID_HEADER_TOKEN',
  'HPE_UNEXPECTED_SPACE',
])
