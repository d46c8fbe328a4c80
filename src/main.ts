/**
 * The composition root: configuration in, running listeners out. The only place that wires
 * adapters together; `corridor serve`, the tests and the benchmark all start Corridor here.
 */
import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createAdminServer } from './admin/admin-server.ts'
import { createApprovalsApi } from './admin/approvals-api.ts'
import { createStopsApi, type TakeBack } from './admin/stops-api.ts'
import { createAuditApi } from './admin/audit-api.ts'
import { Principals } from './admin/principals.ts'
import type { HeldRequest } from './approvals/approval.ts'
import { openRuntimeControls, type RuntimeControls } from './controls/runtime-controls.ts'
import { scopeText, stopFor } from './controls/stop.ts'
import { Metrics } from './telemetry/metrics.ts'
import { SupervisedMetrics } from './telemetry/supervised-metrics.ts'
import { Tracer } from './telemetry/tracing.ts'
import { AuditShipper, shippingByTarget } from './audit/shipper.ts'
import type { PostgresAuditStore } from './audit/postgres-store.ts'
import { ApprovalService } from './approvals/approval-service.ts'
import type { ApprovalStore } from './approvals/approval-store.ts'
import { ApproverAuthenticator } from './approvals/approver-auth.ts'
import { ApprovalExecutor } from './approvals/executor.ts'
import { MemoryApprovalStore } from './approvals/memory-store.ts'
import { WebhookNotifier } from './approvals/webhook.ts'
import { FileAuditSink, type AuditSink } from './audit/sink.ts'
import { expireUnwrittenTrail, unwrittenTrails, workerTrail } from './audit/trails.ts'
import { whyCertificateChecksOff } from './config/certificate-checks.ts'
import { resolveUrl, type ApprovalsConfig, type ServerConfig } from './config/server-config.ts'
import { CredentialBroker } from './credentials/broker.ts'
import { VaultClient } from './credentials/vault/vault-client.ts'
import { TransitSigner } from './credentials/vault/transit-signer.ts'
import { VaultSession } from './credentials/vault/vault-session.ts'
import { Identifier } from './identity/identify.ts'
import { PolicyStore } from './policy/reloader.ts'
import { createAgentServer } from './proxy/agent-server.ts'
import { Upstreams } from './forwarding/upstreams.ts'
import type { ResolveAll } from './shared/checked-lookup.ts'
import { createParserRefusals } from './proxy/parser-refusals.ts'
import { createPipeline } from './proxy/pipeline.ts'
import { Lifecycle } from './shared/lifecycle.ts'
import type { Logger } from './shared/logger.ts'
import { otlpHeadersFrom } from './shared/otlp-headers.ts'

export interface RunningCorridor {
  readonly agentUrl: string
  readonly adminUrl: string
  readonly policies: PolicyStore
  readonly audit: AuditSink
  readonly approvals: ApprovalService
  /** Null unless audit.postgres is configured. */
  readonly shipper: AuditShipper<PostgresAuditStore> | null
  /** Every audit shipper (PostgreSQL, OTLP). */
  readonly shippers: readonly AuditShipper[]
  close(): Promise<void>
}

export interface StartOptions {
  readonly env: Readonly<Record<string, string | undefined>>
  readonly log: Logger
  /** Replaces the file sink named in the config (tests). */
  readonly audit?: AuditSink
  /**
   * This process's place, 1 to N, when it is one of several workers under a supervisor
   * (workers/supervisor.ts): it binds with SO_REUSEPORT beside the others on the same ports and
   * answers /metrics with every worker's figures; it writes and ships an audit trail of its own,
   * named by its place (audit/trails.ts), which the worker that replaces it carries on. Absent: a
   * process of its own, writing the configured audit file.
   */
  readonly workerSlot?: number
  /** The clock decisions, holds, expiries and leases are read against (tests move it instead of sleeping). */
  readonly now?: () => number
  /** How upstream hosts are resolved (tests stand in for DNS); every answer is judged all the same. */
  readonly resolve?: ResolveAll
}

export async function startCorridor(config: ServerConfig, options: StartOptions): Promise<RunningCorridor> {
  const { log } = options
  const now = options.now ?? Date.now
  // The environment Corridor reads its secrets from, and the process's, which Node's TLS reads.
  const certificatesUnchecked = whyCertificateChecksOff(options.env, process.env)
  if (certificatesUnchecked !== null) throw new Error(certificatesUnchecked)
  // What the environment gives first: a variable that is unset, malformed or names a URL its
  // setting may not use stops the start before anything is opened.
  const exportHeaders = {
    traces: otlpHeadersFrom(config.traces?.headersEnv ?? null, options.env, 'telemetry.traces'),
    audit: otlpHeadersFrom(config.auditOtlp?.headersEnv ?? null, options.env, 'audit.otlp'),
  }
  const urls = {
    postgres: resolveUrl(config.auditPostgres?.url, options.env),
    approvalsRedis: resolveUrl(config.approvals.redis?.url, options.env),
    stateRedis: resolveUrl(config.state.redis?.url, options.env),
    webhook: resolveUrl(config.approvals.webhook?.url, options.env),
  }
  const policies = new PolicyStore(config.files, log)
  // At start a broken policy is fatal: better not to start than to start refusing everything unnoticed.
  policies.loadInitial()
  const vault =
    config.vault === null ? null : new VaultSession(new VaultClient(config.vault), config.vault.auth, options.env, log)
  const credentials = new CredentialBroker({
    env: options.env,
    vault,
    log,
    now,
    issueTimeoutMs: config.credentialTimeoutMs,
  })
  const upstreams = new Upstreams(options.resolve)
  const sync = (): void => {
    const bundle = policies.current
    if (bundle === null) return
    credentials.sync(bundle.catalog)
    upstreams.sync(bundle.catalog)
  }
  sync()
  policies.onChange(sync)
  if (config.watchPolicy) policies.watch()

  const worker = options.workerSlot !== undefined
  const auditFile = worker ? workerTrail(config.auditFile, options.workerSlot) : config.auditFile
  // Trails no process writes now (a single-process run's before workers, the places of a larger
  // `workers` before): the process in place 1 ships what they still hold, a killed writer's last entries.
  const running = worker
    ? Array.from({ length: config.workers }, (_, i) => workerTrail(config.auditFile, i + 1))
    : [config.auditFile]
  const orphans = !worker || options.workerSlot === 1 ? unwrittenTrails(config.auditFile, running) : []
  // The shipper first: retention asks it whether a rotated file has been shipped before deleting it.
  const shippers = await auditShippers(config, auditFile, orphans, urls.postgres, exportHeaders.audit, log)
  const shipper = shippers.postgres
  let audit: AuditSink
  if (options.audit !== undefined) audit = options.audit
  else {
    const transit =
      config.auditSigningTransit === null || vault === null
        ? null
        : new TransitSigner(vault, config.auditSigningTransit.mount, config.auditSigningTransit.key)
    audit = new FileAuditSink(auditFile, log, {
      signingKey:
        config.auditSigningKeyFile === null ? null : createPrivateKey(readFileSync(config.auditSigningKeyFile)),
      signLater: transit === null ? null : (payload) => transit.sign(payload),
      rotation: config.auditRotation,
      checkpointEntries: config.auditCheckpointEntries,
      mayDelete: (file) => shippers.own.every((s) => s.hasShipped(file)),
      onRotate: (file) => {
        for (const s of shippers.own) s.rotated(file)
      },
    })
  }
  const stopExpiry = expireUnwritten(shippers.orphaned, config.auditRotation?.retainMs ?? null, audit, log)
  const identifier = new Identifier(config.agentJwt, config.userJwt)

  const store = await approvalStore(config.approvals, urls.approvalsRedis, log)
  const controls = await openRuntimeControls({
    redis:
      config.state.redis === null || urls.stateRedis === null ? null : { ...config.state.redis, url: urls.stateRedis },
    stopsFile: config.state.stopsFile,
    staleAfterMs: config.state.staleAfterMs,
    log,
    now,
  })
  let approvals: ApprovalService | null = null
  // What spans and metrics name the agent listener's scheme.
  const agentScheme = config.listen.tls === null ? 'http' : 'https'
  const tracer =
    config.traces === null
      ? null
      : new Tracer({
          endpoint: config.traces.endpoint,
          headers: exportHeaders.traces,
          timeoutMs: config.traces.timeoutMs,
          sample: config.traces.sample,
          followAgentSampling: config.traces.followAgentSampling,
          alwaysRecord: config.traces.alwaysRecord,
          scheme: agentScheme,
          log,
        })
  const executor = new ApprovalExecutor({
    tracer,
    store,
    config: config.approvals,
    policies,
    credentials,
    upstreams,
    audit,
    log,
    now,
    stoppedBecause: (held) => {
      const stop = stopFor(
        controls.board.live(),
        {
          agent: held.agent,
          owner: held.owner,
          connector: held.connector,
          action: held.action,
          risk: held.risk,
          user: held.user,
        },
        now(),
      )
      return stop === null ? null : `stopped by ${stop.by}: ${stop.reason} (${scopeText(stop.scope)})`
    },
    onSettled: (id, event, reason) => approvals?.settledByExecutor(id, event, reason),
  })
  const webhook =
    config.approvals.webhook === null || urls.webhook === null
      ? null
      : new WebhookNotifier(urls.webhook, config.approvals.webhook.timeoutMs, log)
  approvals = new ApprovalService({
    store,
    executor,
    config: config.approvals,
    policies,
    audit,
    log,
    notifier: webhook,
    now,
    onDecided: (outcome, waitedMs) => metrics?.decided(outcome, waitedMs),
  })
  const approvalService = approvals
  policies.onChange((bundle) => void approvalService.recheckAll(bundle))
  const takeBack = stopEffects(controls, credentials, approvalService, policies, log, now)
  // Every replica takes back what a stop covers when it first sees it (the one that took the order already has).
  controls.board.onStop((stop) => {
    void takeBack(stop, false).then(
      (affected) => log.warn({ stop: stop.id, affected }, 'stop applied on this replica'),
      (err: unknown) => log.error({ err, stop: stop.id }, 'stop not fully applied on this replica'),
    )
  })

  const metrics = config.metrics
    ? new Metrics(
        {
          stops: () => controls.board.live(),
          approvalsPending: () => approvalService.pendingCount().catch(() => null),
          tracesDropped: () => tracer?.dropped ?? null,
          auditHealthy: () => audit.healthy,
          auditWriteFailures: () => audit.writeFailures,
          shippingLagBytes: () =>
            new Map([...shippingByTarget(shippers.all)].map(([target, s]) => [target, s.lagBytes])),
        },
        {
          scheme: agentScheme,
          upstreamOrigin: (connector) => policies.current?.catalog.connectors.get(connector)?.origin ?? null,
          credentialSource: (connector) => policies.current?.catalog.connectors.get(connector)?.credential.kind ?? null,
        },
      )
    : null
  // Workers share the admin port: a scrape, whichever worker gets it, must show them all.
  const exposition = metrics !== null && worker ? new SupervisedMetrics(metrics.registry, log) : metrics
  const lifecycle = new Lifecycle()
  const pipeline = createPipeline({
    lifecycle,
    policies,
    identifier,
    credentials,
    upstreams,
    audit,
    log,
    limits: config.limits,
    now,
    approvals,
    approvalWaitMs: config.approvals.waitMs,
    approvalExpiresMs: config.approvals.expiresAfterMs,
    controls,
    metrics,
    tracer,
  })
  const agentServer = createAgentServer(
    config.listen,
    config.limits,
    pipeline,
    createParserRefusals({ audit, now, metrics }),
    lifecycle,
    log,
  )
  const approverAuth = new ApproverAuthenticator(config.approverJwt)
  const approvalsApi = createApprovalsApi(approvals, approverAuth, policies, log)
  const principals = new Principals(policies, approverAuth, {
    operator: config.approverJwt?.operatorGroups ?? [],
    auditor: config.approverJwt?.auditorGroups ?? [],
  })
  const stopsApi = createStopsApi(controls, takeBack, principals, policies, audit, log, now)
  const auditApi = createAuditApi(
    principals,
    audit,
    { auditFile: config.auditFile, store: () => shipper?.store ?? null },
    log,
  )
  const adminServer = createAdminServer(
    config.admin,
    policies,
    audit,
    approvals,
    [approvalsApi, stopsApi, auditApi],
    approverAuth,
    controls.board,
    exposition,
    () => shippingByTarget(shippers.all),
    lifecycle,
    log,
  )

  // Workers bind with SO_REUSEPORT, beside the others on the same ports.
  await listen(agentServer, config.listen.host, config.listen.port, worker)
  await listen(adminServer, config.admin.host, config.admin.port, worker)
  // Known only now (a port of 0 is chosen at binding): no upstream call may loop back into either.
  upstreams.ownListeners.set([agentServer.address() as AddressInfo, adminServer.address() as AddressInfo])
  const agentUrl = urlOf(agentServer, config.listen.tls === null ? 'http' : 'https')
  const adminUrl = urlOf(adminServer, config.admin.tls === null ? 'http' : 'https')
  log.info({ agentUrl, adminUrl, policyVersion: policies.current?.version }, 'corridor listening')

  return {
    agentUrl,
    adminUrl,
    policies,
    audit,
    approvals,
    shipper,
    shippers: shippers.all,
    async close() {
      // 1. Readiness fails at once; the listener keeps accepting for the configured delay.
      lifecycle.drain()
      policies.close()
      const { graceMs, delayMs } = config.shutdown
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
      // 2. No new connections; idle keep-alive ones close; answers in flight carry Connection: close.
      const agentClosed = new Promise<void>((r) => agentServer.close(() => r()))
      agentServer.closeIdleConnections()
      const deadline = Date.now() + graceMs
      log.info({ inFlight: lifecycle.inFlight, graceMs }, 'draining: no new connections, finishing what is in flight')
      // 3. Held calls get their 202 now (the approval goes on); requests and releases in flight finish within the grace,
      //    releases storing their results while the store is still open.
      await approvalService.answerWaitingCalls(Math.min(2_000, graceMs))
      await Promise.all([lifecycle.whenIdle(deadline), approvalService.close(deadline)])
      // 4. What is still in flight is cut, and recorded as cut by the shutdown.
      lifecycle.cut()
      if (lifecycle.inFlight > 0)
        log.warn({ inFlight: lifecycle.inFlight }, 'shutdown grace over: cutting requests in flight')
      agentServer.closeAllConnections()
      await Promise.all([agentClosed, closeServer(adminServer)])
      stopExpiry()
      await store.close()
      await controls.close()
      await tracer?.close()
      await upstreams.close()
      // Leases first (they need Corridor's Vault token), then the final checkpoint (Vault may sign
      // it), then the token itself.
      await credentials.close()
      await audit.close()
      await vault?.close()
      await vault?.client.close()
      // The final checkpoint too, if PostgreSQL takes it now; otherwise the next start ships it.
      await Promise.race([
        Promise.all(shippers.all.map((s) => s.flush().catch(() => {}))),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ])
      for (const s of shippers.all) await s.close()
      // A target is shared by the shippers of every trail this process ships.
      for (const target of new Set(shippers.all.map((s) => s.store))) await target.close()
    },
  }
}

/**
 * What a stop takes back on this replica: requests in flight in its scope are cut, approvals
 * waiting in its scope cancelled, and (for a full stop not narrowed to an action or a user) the
 * Vault leases and tokens issued for its agents revoked. A lease shared by every agent of a
 * connector is revoked only when the whole connector (or everything) is stopped: other agents
 * still use it, and the stopped agent never held it.
 */
function stopEffects(
  controls: RuntimeControls,
  credentials: CredentialBroker,
  approvals: ApprovalService,
  policies: PolicyStore,
  log: Logger,
  now: () => number,
): TakeBack {
  return async (stop, dryRun) => {
    const { scope } = stop
    const registry = policies.current?.registry
    const agents = [...(registry?.agents.values() ?? [])]
      .filter(
        (a) =>
          (scope.agent === undefined || a.id === scope.agent) &&
          (scope.owner === undefined || a.owner === scope.owner) &&
          (scope.connector === undefined || a.connectors.has(scope.connector)),
      )
      .map((a) => a.id)
    const inFlight = dryRun ? controls.inFlight.countIn(stop, now()) : controls.inFlight.cut(stop, now())
    const held = (h: HeldRequest): boolean =>
      stopFor(
        [stop],
        { agent: h.agent, owner: h.owner, connector: h.connector, action: h.action, risk: h.risk, user: h.user },
        now(),
      ) !== null
    let cancelled = 0
    try {
      cancelled = dryRun
        ? await approvals.countWhere(held)
        : await approvals.cancelWhere((h) => (held(h) ? `stopped by ${stop.by}: ${stop.reason}` : null))
    } catch (err) {
      // The executor checks the stop again before any release, so nothing in scope runs meanwhile.
      log.error({ err, stop: stop.id }, 'approvals in the scope of a stop could not be cancelled now')
    }
    let revoked = 0
    if (stop.mode === 'stop' && scope.action === undefined && scope.user === undefined) {
      const connectors = scope.connector === undefined ? null : new Set([scope.connector])
      const byAgent = scope.agent === undefined && scope.owner === undefined ? null : new Set(agents)
      revoked = await credentials.revoke(connectors, byAgent, dryRun)
    }
    return { in_flight_cut: inFlight, approvals_cancelled: cancelled, leases_revoked: revoked, agents }
  }
}

/**
 * The shippers configured, PostgreSQL first (queries read its store), then an OpenTelemetry
 * collector: `own` for this process's audit trail `file`, `orphaned` for each trail in `orphans`
 * that nobody writes any more, and `all` of them.
 */
async function auditShippers(
  config: ServerConfig,
  file: string,
  orphans: readonly string[],
  postgresUrl: string | null,
  otlpHeaders: Readonly<Record<string, string>>,
  log: Logger,
): Promise<{
  postgres: AuditShipper<PostgresAuditStore> | null
  own: AuditShipper[]
  orphaned: Map<string, AuditShipper[]>
  all: AuditShipper[]
}> {
  const orphaned = new Map(orphans.map((orphan) => [orphan, [] as AuditShipper[]]))
  if (config.auditPostgres === null && config.auditOtlp === null) return { postgres: null, own: [], orphaned, all: [] }
  let postgres: AuditShipper<PostgresAuditStore> | null = null
  const own: AuditShipper[] = []
  const pgConfig = config.auditPostgres
  if (pgConfig !== null && postgresUrl !== null) {
    const { PostgresAuditStore } = await import('./audit/postgres-store.ts')
    const store = new PostgresAuditStore({
      url: postgresUrl,
      table: pgConfig.table,
      timeoutMs: pgConfig.timeoutMs,
    })
    const options = { store, log, batch: pgConfig.batch, pollMs: pgConfig.pollMs }
    postgres = new AuditShipper({ file, ...options })
    own.push(postgres)
    for (const [orphan, shippers] of orphaned) shippers.push(new AuditShipper({ file: orphan, ...options }))
  }
  const otlp = config.auditOtlp
  if (otlp !== null) {
    const { OtlpLogTarget } = await import('./audit/otlp-target.ts')
    const store = new OtlpLogTarget({
      endpoint: otlp.endpoint,
      timeoutMs: otlp.timeoutMs,
      headers: otlpHeaders,
    })
    const options = { store, log, batch: 500, pollMs: otlp.pollMs }
    own.push(new AuditShipper({ file, ...options }))
    for (const [orphan, shippers] of orphaned) shippers.push(new AuditShipper({ file: orphan, ...options }))
  }
  const all = [...own, ...[...orphaned.values()].flat()]
  for (const shipper of all) shipper.start()
  return { postgres, own, orphaned, all }
}

/**
 * `retain` over the trails nobody writes any more, which no rotation of theirs applies it to: at
 * start and hourly, deleting only what every shipper of the trail has shipped. Returns its stop.
 */
function expireUnwritten(
  orphaned: ReadonlyMap<string, readonly AuditShipper[]>,
  retainMs: number | null,
  audit: AuditSink,
  log: Logger,
): () => void {
  if (retainMs === null || orphaned.size === 0) return () => {}
  const sweep = (): void => {
    for (const [trail, shippers] of orphaned) {
      const shipped = (file: string): boolean =>
        shippers.every((s) => (file === trail ? s.status().lagBytes === 0 : s.hasShipped(file)))
      try {
        // Nobody writes that trail: this process's own records the deletion, before it is made.
        const deleted = expireUnwrittenTrail(
          trail,
          retainMs,
          Date.now(),
          shipped,
          (event) => audit.writeEvent(event),
          (file, err) =>
            log.error({ err, file }, 'audit file past its retention could not be deleted; tried again within the hour'),
        )
        for (const { file } of deleted) log.info({ file }, 'audit file past its retention deleted')
      } catch (err) {
        log.error({ err, trail }, 'retention over an audit trail nobody writes failed; tried again within the hour')
      }
    }
  }
  sweep()
  const timer = setInterval(sweep, 3_600_000)
  timer.unref()
  return () => clearInterval(timer)
}

async function approvalStore(config: ApprovalsConfig, redisUrl: string | null, log: Logger): Promise<ApprovalStore> {
  const limits = {
    maxPending: config.maxPending,
    maxPendingPerAgent: config.maxPendingPerAgent,
    keepMs: config.keepResultsMs,
    retryWindowMs: config.retryWindowMs,
  }
  if (config.redis === null || redisUrl === null) {
    log.warn(
      'APPROVALS ARE IN MEMORY: no approvals.redis is configured, so requests held for approval live in this process only and are lost when it stops; run a single instance, or configure Redis',
    )
    return new MemoryApprovalStore(limits)
  }
  // Loaded only when configured: ioredis alone adds ~20 MiB to a process that does not use it.
  const { RedisApprovalStore } = await import('./approvals/redis-store.ts')
  const store = new RedisApprovalStore(
    {
      url: redisUrl,
      keyPrefix: config.redis.keyPrefix,
      timeoutMs: config.redis.timeoutMs,
      withoutPersistence: config.redis.withoutPersistence,
    },
    limits,
    log,
  )
  if (!(await store.connected(2_000)))
    log.error('approval store: Redis not reachable at start; requests that need approval get 503 until it is')
  return store
}

/** Binds a listener; a port already taken is one plain sentence, not a stack trace. */
export function listen(server: Server, host: string, port: number, reusePort: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(
              `cannot listen on ${host}:${port}: the port is in use (another Corridor, or npm start, still running?)`,
            )
          : err,
      )
    server.once('error', onError)
    // A worker binds its own socket (exclusive) and the kernel spreads new connections over the workers' sockets.
    server.listen({ port, host, ...(reusePort ? { exclusive: true, reusePort: true } : {}) }, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

function urlOf(server: Server, scheme: 'http' | 'https' = 'http'): string {
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `${scheme}://${host}:${address.port}`
}
