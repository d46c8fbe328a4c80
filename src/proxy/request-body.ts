/**
 * Reads the request body into memory, bounded by the connector's limit (counting bytes as they
 * arrive, whatever Content-Length claimed). What it means is read by request/body.ts.
 */
import type { IncomingMessage } from 'node:http'
import { CorridorError } from '../shared/errors.ts'
import { ClientAbortedError } from '../shared/client-aborted.ts'
import { parserErrorOf, parserRefusal } from './parser-refusals.ts'

export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBytes) {
    return Promise.reject(
      new CorridorError('body_too_large', `the body exceeds this connector's limit of ${maxBytes} bytes`),
    )
  }
  if (declared === '0' || (declared === undefined && req.headers['transfer-encoding'] === undefined))
    return Promise.resolve(EMPTY)
  // The body may have broken off while identity was being checked, before anyone listened.
  if (req.readableAborted || req.destroyed) return Promise.reject(cutShort(req))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > maxBytes) {
        cleanup()
        reject(new CorridorError('body_too_large', `the body exceeds this connector's limit of ${maxBytes} bytes`))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size))
    }
    const onAbort = (): void => {
      cleanup()
      reject(cutShort(req))
    }
    const onError = (err: Error & { code?: string }): void => {
      cleanup()
      reject(parserErrorOf(req) !== null ? cutShort(req) : bodyError(err))
    }
    const cleanup = (): void => {
      req.off('data', onData).off('end', onEnd).off('aborted', onAbort).off('error', onError)
    }
    req.on('data', onData).on('end', onEnd).on('aborted', onAbort).on('error', onError)
  })
}

const EMPTY = Buffer.alloc(0)

/** A body that broke off: the agent left, took too long, or sent framing Node's parser refused (a bad chunk). */
function bodyError(err: Error & { code?: string }): Error {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new CorridorError('request_timeout')
  if (typeof err.code === 'string' && err.code.startsWith('HPE_')) return parserRefusal(err.code)
  return new ClientAbortedError()
}

function cutShort(req: IncomingMessage): Error {
  const code = parserErrorOf(req)
  return code === null ? new ClientAbortedError() : parserRefusal(code)
}
