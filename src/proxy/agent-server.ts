/**
 * The agent listener: a plain node:http server with limits set explicitly instead of Node's
 * defaults (60 s header deadline, 300 s request deadline, silent header truncation).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { ServerLimits } from '../config/server-config.ts'

export function createAgentServer(limits: ServerLimits, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      insecureHTTPParser: false,
      // Node answers 400 to HTTP/1.1 requests without Host; absolute-form targets are refused by the pipeline.
      requireHostHeader: true,
    },
    handler,
  )
  // One more than the cap, so that a request cut at the cap is seen as over it (CVE-2026-58044).
  server.maxHeadersCount = limits.maxHeaders + 1
  return server
}
