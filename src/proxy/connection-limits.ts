/**
 * Caps on the agent listener's connections: in total, and per client address, so that one client
 * (a runaway agent, a slow-loris) cannot take every socket Corridor has. A connection over a cap
 * is answered at once with a 503 problem (`connection_limit`) and closed, before any request on
 * it is read; nothing on it reaches the pipeline.
 */
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { problemBody } from '../shared/problem.ts'
import { CorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'

export interface ConnectionLimits {
  readonly maxConnections: number
  readonly maxConnectionsPerClient: number
}

const REFUSED = Symbol('corridor.connectionRefused')

/** Whether the connection was refused by a cap (its requests, if any arrive, are dropped). */
export function refusedConnection(socket: Socket): boolean {
  return (socket as Socket & { [REFUSED]?: boolean })[REFUSED] === true
}

export function limitConnections(server: Server, limits: ConnectionLimits, log: Logger): void {
  const tlsListener = 'setSecureContext' in server
  let total = 0
  const perClient = new Map<string, number>()
  let refusedSinceReport = 0
  let reportTimer: NodeJS.Timeout | null = null

  // Before Node's own listener: the refusal is written before an HTTP parser could act on anything.
  server.prependListener('connection', (socket: Socket) => {
    const client = socket.remoteAddress ?? 'unknown'
    const mine = perClient.get(client) ?? 0
    const over =
      total >= limits.maxConnections
        ? `Corridor holds its maximum of ${limits.maxConnections} connections`
        : mine >= limits.maxConnectionsPerClient
          ? `this client holds its maximum of ${limits.maxConnectionsPerClient} connections`
          : null
    if (over !== null) {
      ;(socket as Socket & { [REFUSED]?: boolean })[REFUSED] = true
      socket.on('error', () => {})
      // Before a TLS handshake nothing readable can be said: the connection is simply closed.
      if (tlsListener) socket.destroy()
      else socket.end(refusal(over), () => socket.destroy())
      refusedSinceReport++
      // One line a second at most, however hard the flood.
      reportTimer ??= setTimeout(() => {
        log.warn({ refused: refusedSinceReport, connections: total }, 'connections refused over the connection caps')
        refusedSinceReport = 0
        reportTimer = null
      }, 1_000).unref()
      return
    }
    total++
    perClient.set(client, mine + 1)
    socket.once('close', () => {
      total--
      const left = (perClient.get(client) ?? 1) - 1
      if (left === 0) perClient.delete(client)
      else perClient.set(client, left)
    })
  })
}

function refusal(why: string): string {
  const error = new CorridorError('connection_limit', `${why}; reuse connections (keep-alive) or retry shortly`)
  const body = JSON.stringify(problemBody(error, '-'))
  return (
    `HTTP/1.1 ${error.status} Service Unavailable\r\n` +
    'Content-Type: application/problem+json\r\n' +
    'Retry-After: 1\r\n' +
    'Connection: close\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  )
}
