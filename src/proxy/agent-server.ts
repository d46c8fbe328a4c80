/**
 * The agent listener: a node:http server (node:https when `listen.tls` is set) with limits set
 * explicitly instead of Node's defaults (60 s header deadline, 300 s request deadline, silent
 * header truncation).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AgentListenConfig, ServerLimits } from '../config/server-config.ts'
import type { Lifecycle } from '../shared/lifecycle.ts'
import type { Logger } from '../shared/logger.ts'
import { limitConnections, refusedConnection } from './connection-limits.ts'
import { readKeyPair, reloadOnChange, TLS_MIN_VERSION } from '../shared/tls-reload.ts'
import type { createParserRefusals } from './parser-refusals.ts'

export function createAgentServer(
  listen: AgentListenConfig,
  limits: ServerLimits,
  pipeline: (req: IncomingMessage, res: ServerResponse) => void,
  refusals: ReturnType<typeof createParserRefusals>,
  lifecycle: Lifecycle,
  log: Logger,
): Server {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    // Over a connection cap: already answered 503 and closing; nothing on it is served.
    if (refusedConnection(req.socket)) return void res.destroy()
    // Counted until the response is over, however it ends: shutdown waits for these.
    res.once('close', lifecycle.begin())
    // While draining, each answer tells the client to take its next request elsewhere.
    if (lifecycle.phase !== 'serving') res.shouldKeepAlive = false
    pipeline(req, res)
  }
  const options = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // Node checks the header and request deadlines on this interval (30 s by default, which lets
    // a slow client hold a connection up to 30 s past its deadline); a pass costs microseconds
    // per connection, and the connection caps bound how many there are.
    connectionsCheckingInterval: 500,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: limits.maxHeaderBytes,
    insecureHTTPParser: false,
    // Node would answer a missing Host itself, unaudited: the pipeline refuses it instead, as it does absolute-form targets.
    requireHostHeader: false,
  }
  let server: Server
  if (listen.tls === null) server = createServer(options, handler)
  else {
    const tlsServer = createTlsServer({ ...options, ...readKeyPair(listen.tls), minVersion: TLS_MIN_VERSION }, handler)
    reloadOnChange(tlsServer, listen.tls, log)
    // A failed handshake (a client that does not trust the certificate, a scanner) is no request: nothing to audit.
    tlsServer.on('tlsClientError', (err: Error) => log.debug({ err }, 'TLS handshake failed'))
    server = tlsServer
  }
  // Everything Node's parser refuses is answered and audited by Corridor, not closed silently.
  server.on('clientError', refusals.onClientError)
  server.on('connect', refusals.onConnect)
  // An Expect other than 100-continue reaches the pipeline, which refuses it with a record.
  server.on('checkExpectation', handler)
  // One more than the cap, so that a request cut at the cap is seen as over it (CVE-2026-58044).
  server.maxHeadersCount = limits.maxHeaders + 1
  limitConnections(server, limits, log)
  return server
}
