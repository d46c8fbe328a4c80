/**
 * `workers: N` (N > 1): this process forks N workers with node:cluster and handles no requests
 * itself. Each worker binds its own sockets on the same ports with SO_REUSEPORT and the kernel
 * spreads new connections over them, so no connection passes through this process (cluster's
 * round-robin hand-off loses a connection handed to a worker at the moment it dies: the client
 * hangs). Workers read the same policy files, append to the same audit file and share held
 * requests through Redis; nothing else is shared, so any worker can answer any connection.
 *
 * The first worker binds the configured ports; when they are 0 (any free port) the others are
 * told which ports it got, so that every worker listens on the same ones.
 *
 * A /metrics scrape, whichever worker gets it, shows every worker's figures: the supervisor
 * gathers them (cluster-metrics.ts).
 *
 * The supervisor restarts a worker that dies after it was ready (backing off while they keep
 * dying), stops everything when one cannot start at all (a port in use, a broken policy: the
 * operator must act), and on SIGTERM/SIGINT stops every worker gracefully before it exits.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from '../shared/logger.ts'
import { isWorkerReady } from '../shared/worker-messages.ts'
import { ClusterMetrics } from './cluster-metrics.ts'

/** "agentPort,adminPort" for workers after the first (serve.ts). */
export const SHARED_PORTS_ENV = 'CORRIDOR_SHARED_PORTS'

/**
 * A worker's place, 1 to N, which its replacement takes over (serve.ts): it names the audit trail
 * the worker writes, and the worker in place 1 also ships the trails no worker writes any more.
 */
export const WORKER_SLOT_ENV = 'CORRIDOR_WORKER_SLOT'

const RESTART_DELAY_MS = 1_000
const MAX_RESTART_DELAY_MS = 30_000
const CRASH_WINDOW_MS = 60_000

/** Resolves with the exit code once every worker has stopped. */
/** `stopGraceMs`: how long workers get to finish what they are doing after SIGTERM before they are killed. */
export function superviseWorkers(count: number, log: Logger, stopGraceMs: number): Promise<number> {
  return new Promise((resolveExit) => {
    const live = new Set<Worker>()
    const ready = new Set<Worker>()
    const recentCrashes: number[] = []
    let allStarted = false
    let stopping = false
    let exitCode = 0
    let ports: string | null = null
    const metrics = new ClusterMetrics(() => ready)

    const slots = new Map<Worker, number>()

    const fork = (slot: number): void => {
      if (stopping) return
      const worker = cluster.fork({
        [WORKER_SLOT_ENV]: String(slot),
        ...(ports === null ? {} : { [SHARED_PORTS_ENV]: ports }),
      })
      live.add(worker)
      slots.set(worker, slot)
      worker.on('message', (message: unknown) => {
        if (metrics.onMessage(worker, message) || !isWorkerReady(message)) return
        ready.add(worker)
        if (ports === null) {
          ports = `${new URL(message.agentUrl).port},${new URL(message.adminUrl).port}`
          for (let slot = 2; slot <= count; slot++) fork(slot)
        }
        if (!allStarted && ready.size === count) {
          allStarted = true
          log.info(
            {
              agentUrl: message.agentUrl,
              adminUrl: message.adminUrl,
              workers: count,
              pids: [...ready].map((w) => w.process.pid),
            },
            'corridor listening',
          )
        }
      })
      worker.once('exit', (code, signal) => onExit(worker, code, signal))
    }

    const onExit = (worker: Worker, code: number | null, signal: string | null): void => {
      live.delete(worker)
      const wasReady = ready.delete(worker)
      metrics.retire(worker)
      const slot = slots.get(worker) ?? 1
      slots.delete(worker)
      if (stopping) {
        if (live.size === 0) resolveExit(exitCode)
        return
      }
      if (!allStarted && !wasReady) {
        log.error(
          { worker: worker.id, code, signal },
          'a worker could not start; stopping every worker (see its error above)',
        )
        stop(1)
        return
      }
      // A crash after start, or a replacement that could not start: keep the others serving and try again, more slowly while it keeps happening.
      const now = Date.now()
      recentCrashes.push(now)
      while ((recentCrashes[0] ?? now) < now - CRASH_WINDOW_MS) recentCrashes.shift()
      const delay = Math.min(MAX_RESTART_DELAY_MS, RESTART_DELAY_MS * 2 ** (recentCrashes.length - 1))
      log.error(
        { worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delay, workersLeft: live.size },
        'worker stopped unexpectedly; starting a replacement',
      )
      // Not unref'd: when every worker is dead this timer is all that keeps the supervisor alive.
      setTimeout(() => fork(slot), delay)
    }

    const stop = (code: number): void => {
      if (stopping) return
      stopping = true
      exitCode = code
      if (live.size === 0) return resolveExit(exitCode)
      for (const worker of live) worker.process.kill('SIGTERM')
      setTimeout(() => {
        for (const worker of live) worker.process.kill('SIGKILL')
      }, stopGraceMs).unref()
    }

    const onSignal = (): void => {
      log.info({ workers: live.size }, 'shutting down')
      stop(0)
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    fork(1)
  })
}
