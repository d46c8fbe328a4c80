/**
 * The admin listener, separate from the agent listener and on loopback by default: liveness,
 * readiness (a policy is in force and the audit sink takes writes; the stops in force), the policy
 * version, the approvers' API (approvals-api.ts) and the operators' API (stops-api.ts).
 */
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AdminListenConfig } from '../config/server-config.ts'
import type { ApprovalService } from '../approvals/approval-service.ts'
import type { AuditSink } from '../audit/sink.ts'
import type { ApproverAuthenticator } from '../approvals/approver-auth.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import type { Lifecycle } from '../shared/lifecycle.ts'
import type { Logger } from '../shared/logger.ts'
import { readKeyPair, reloadOnChange, TLS_MIN_VERSION } from '../shared/tls-reload.ts'
import type { StopBoard } from '../controls/stop-board.ts'
import { scopeText } from '../controls/stop.ts'
import type { MetricsExposition } from '../telemetry/metrics.ts'
import type { ShippingStatus } from '../audit/shipper.ts'
import { sendFailure } from './respond.ts'

export function createAdminServer(
  listen: AdminListenConfig,
  policies: PolicyStore,
  audit: AuditSink,
  approvals: ApprovalService,
  apis: readonly { handle(req: IncomingMessage, res: ServerResponse): boolean }[],
  authenticator: ApproverAuthenticator,
  stops: StopBoard,
  metrics: MetricsExposition | null,
  shipping: () => ReadonlyMap<string, ShippingStatus>,
  lifecycle: Lifecycle,
  log: Logger,
): Server {
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    for (const api of apis) if (api.handle(req, res)) return
    const send = (status: number, body: unknown): void => {
      const payload = JSON.stringify(body)
      res.writeHead(status, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(payload),
      })
      res.end(payload)
    }
    if (req.method !== 'GET') return send(405, { error: 'method not allowed' })
    const url = req.url ?? '/'
    // The pid tells which worker answered when several serve the listeners.
    if (url === '/healthz') return send(200, { status: 'ok', pid: process.pid })
    if (url === '/metrics' && metrics !== null) {
      // Like /healthz and /readyz, unauthenticated for scrapers: no secret, no agent or path is in it.
      void metrics.text().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' })
          res.end(body)
        },
        // A failed scrape, not a partial one: Prometheus marks it down rather than storing wrong figures.
        (err: unknown) => sendFailure(req, res, err, log, 'metrics', []),
      )
      return
    }
    if (url === '/readyz') {
      // The approval queue is reported but does not decide readiness: without it only holds fail, every other request still works.
      // Draining: not ready, at once, so that load balancers stop sending before the listener closes.
      if (lifecycle.phase !== 'serving') return send(503, { ready: false, draining: true })
      void approvals.ping().then((queue) => {
        const checks = {
          policy: policies.current !== null,
          audit: audit.healthy,
          approval_queue: queue.reachable,
          approval_queue_persistence: queue.persistence,
          // Stops do not decide readiness either: stale ones refuse writes, which is the point.
          stops_fresh: !stops.stale,
        }
        // Shipping to PostgreSQL does not decide readiness: the local file is the record; the lag is shown.
        const ship = shipping()
        const inForce = stops.live().map((s) => ({
          id: s.id,
          scope: scopeText(s.scope),
          mode: s.mode,
          by: s.by,
          since: new Date(s.since).toISOString(),
        }))
        send(checks.policy && checks.audit ? 200 : 503, {
          ready: checks.policy && checks.audit,
          checks,
          stops: inForce,
          // By target (postgres, otlp): how far this process's audit trail is behind.
          ...(ship.size === 0
            ? {}
            : {
                audit_shipping: Object.fromEntries(
                  [...ship].map(([target, s]) => [
                    target,
                    {
                      lag_bytes: s.lagBytes,
                      failing: s.failing,
                      shipped: s.shipped,
                      last_shipped_at: s.lastShippedAt === null ? null : new Date(s.lastShippedAt).toISOString(),
                    },
                  ]),
                ),
              }),
        })
      })
      return
    }
    if (url === '/policy') {
      // Load errors name files and lines: for authenticated approvers only, like the rest beyond liveness and readiness.
      const bundle = policies.current
      if (bundle === null) return send(503, { error: 'no policy loaded' })
      void authenticator.authenticate(req.headers.authorization, bundle).then(
        () => send(200, policies.status()),
        () => send(401, { error: 'authenticate with an approver key or IdP token' }),
      )
      return
    }
    send(404, {
      error: 'not found',
      endpoints: ['/healthz', '/readyz', '/metrics', '/policy', '/approvals', '/stops', '/audit'],
    })
  }
  if (listen.tls === null) return createServer(handler)
  const { clientCaFile } = listen.tls
  const context = clientCaFile === null ? {} : { ca: readFileSync(clientCaFile) }
  const server = createTlsServer(
    {
      ...context,
      ...readKeyPair(listen.tls),
      minVersion: TLS_MIN_VERSION,
      // Mutual TLS when a client CA is given: no certificate from it, no connection.
      ...(clientCaFile === null ? {} : { requestCert: true, rejectUnauthorized: true }),
    },
    handler,
  )
  // A renewed certificate applies without a restart, as on the agent listener; the client CA stays.
  reloadOnChange(server, listen.tls, log, context)
  return server
}
