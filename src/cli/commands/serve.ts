/**
 * `corridor serve`: one process (the default), or with `workers: N` a supervisor and N workers
 * (workers/supervisor.ts). Each worker runs this same command and ends up here as a worker.
 */
import cluster from 'node:cluster'
import { createServer } from 'node:net'
import {
  loadServerConfig,
  MAX_WORKERS,
  whyWorkersUnsupported,
  workerCount,
  type ListenConfig,
  type ServerConfig,
} from '../../config/server-config.ts'
import { whyCertificateChecksOff } from '../../config/certificate-checks.ts'
import { loadBundle } from '../../policy/bundle.ts'
import { createLogger, type Logger } from '../../shared/logger.ts'
import { CONFIG_OPTION, configPath, DEFAULT_CONFIG, UsageError, type Command } from '../command.ts'
import { SHARED_PORTS_ENV, superviseWorkers, WORKER_SLOT_ENV } from '../../workers/supervisor.ts'
import type { WorkerReady } from '../../shared/worker-messages.ts'

export async function serve(config: ServerConfig, env: NodeJS.ProcessEnv, baseLog: Logger): Promise<number> {
  const problem = whyWorkersUnsupported(config) ?? whyCertificateChecksOff(env)
  if (problem !== null) throw new Error(problem)
  if (config.workers > 1 && cluster.isPrimary) {
    // A broken policy would stop every worker at start; say so once, before forking any.
    loadBundle(config.files)
    // SO_REUSEPORT would let the workers join another process's sockets (another Corridor of the same user, with
    // other policies) and share its traffic without a word; a plain bind first fails if anyone holds the ports.
    await assertPortFree(config.listen)
    await assertPortFree(config.admin)
    return superviseWorkers(config.workers, baseLog, config.shutdown.graceMs + config.shutdown.delayMs + 5_000)
  }

  // Loaded here, not at the top: a supervisor serves nothing and stays small without undici, jose and the pipeline.
  const { startCorridor } = await import('../../main.ts')
  const worker = cluster.worker
  const log = worker === undefined ? baseLog : baseLog.child({ worker: worker.id })
  const corridor = await startCorridor(worker === undefined ? config : onSharedPorts(config, env[SHARED_PORTS_ENV]), {
    env,
    log,
    workerSlot: worker === undefined ? undefined : Number(env[WORKER_SLOT_ENV]),
  }).catch((err: unknown) => {
    if (worker === undefined) throw err
    // A worker's IPC channel would keep it alive; exit so that the supervisor sees the failure.
    log.error({ err }, 'worker could not start')
    process.exit(1)
  })
  let stopping = false
  const stop = (): void => {
    // Idempotent: a terminal's Ctrl-C reaches the workers and the supervisor, which signals them again.
    if (stopping) return
    stopping = true
    log.info('shutting down')
    // A close that hangs (a dependency that never answers) must not outlive the grace by much.
    setTimeout(
      () => {
        log.error('shutdown did not finish within its grace; exiting')
        process.exit(1)
      },
      config.shutdown.graceMs + config.shutdown.delayMs + 3_000,
    ).unref()
    void corridor.close().then(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  if (worker !== undefined) {
    const ready: WorkerReady = { type: 'corridor:ready', agentUrl: corridor.agentUrl, adminUrl: corridor.adminUrl }
    worker.send(ready)
    // The supervisor is gone (killed): nobody would replace or stop this worker, so it stops rather than linger.
    worker.once('disconnect', stop)
  }
  return new Promise<number>(() => {})
}

/** Workers after the first listen on the ports the first one got (the config may say 0). */
function onSharedPorts(config: ServerConfig, ports: string | undefined): ServerConfig {
  if (ports === undefined) return config
  const [agent, admin] = ports.split(',').map(Number)
  return {
    ...config,
    listen: { ...config.listen, port: agent ?? config.listen.port },
    admin: { ...config.admin, port: admin ?? config.admin.port },
  }
}

function assertPortFree({ host, port }: ListenConfig): Promise<void> {
  if (port === 0) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`,
        ),
      ),
    )
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()))
  })
}

export const serveCommand: Command = {
  words: ['serve'],
  usage: `corridor serve [--config ${DEFAULT_CONFIG}] [--workers N|auto]`,
  options: { ...CONFIG_OPTION, workers: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run({ values, env }) {
    const config = loadServerConfig(configPath(values))
    const flag = values['workers']
    let workers = config.workers
    if (typeof flag === 'string') {
      const n = workerCount(flag)
      if (n === null)
        throw new UsageError(`--workers takes 'auto' or a whole number from 1 to ${MAX_WORKERS}, got '${flag}'`)
      workers = n
    }
    return serve({ ...config, workers }, env, createLogger(env['CORRIDOR_LOG_LEVEL'] ?? 'info'))
  },
}
