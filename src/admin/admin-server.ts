/**
 * The admin listener, separate from the agent listener and on loopback by default: liveness,
 * readiness (a policy is in force and the audit sink takes writes), the policy version and the
 * approvers' API (approvals-api.ts).
 */
import { createServer, type Server } from 'node:http'
import type { ApprovalService } from '../approvals/approval-service.ts'
import type { AuditSink } from '../audit/sink.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import type { Lifecycle } from '../shared/lifecycle.ts'
import type { ApprovalsApi } from './approvals-api.ts'

export function createAdminServer(
  policies: PolicyStore,
  audit: AuditSink,
  approvals: ApprovalService,
  approvalsApi: ApprovalsApi,
  lifecycle: Lifecycle,
): Server {
  return createServer((req, res) => {
    if (approvalsApi.handle(req, res)) return
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
        }
        send(checks.policy && checks.audit ? 200 : 503, { ready: checks.policy && checks.audit, checks })
      })
      return
    }
    if (url === '/policy') return send(200, policies.status())
    send(404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/policy', '/approvals'] })
  })
}
