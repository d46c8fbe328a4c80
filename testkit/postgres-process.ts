/**
 * A real PostgreSQL server for one test file, from Debian's binaries (initdb + postgres): its own
 * data directory in a temp dir, an ephemeral loopback port, trust authentication on loopback only.
 * PostgreSQL refuses to run as root, so under root it runs as the `postgres` system user. It can
 * be killed (SIGKILL) and started again on the same port and data to prove what survives. It runs
 * in a process group of its own, so that a kill takes every backend with the postmaster: a backend
 * outlives a postmaster killed alone and goes on answering its connection until it notices.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './redis-process.ts'

export interface PostgresProcess {
  readonly url: string
  readonly port: number
  start(): Promise<void>
  /** SIGKILL to the postmaster and every backend, resolved once none is left running: no shutdown checkpoint; what was committed survives (WAL). */
  kill(): Promise<void>
  stop(): Promise<void>
}

function binDir(): string {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))
  if (versions.length === 0) throw new Error('PostgreSQL is not installed (/usr/lib/postgresql)')
  return `/usr/lib/postgresql/${versions[0] as string}/bin`
}

export async function startPostgres(): Promise<PostgresProcess> {
  const bin = binDir()
  const dir = mkdtempSync(join(tmpdir(), 'corridor-pg-'))
  const data = join(dir, 'data')
  const port = await freePort()
  const asRoot = process.getuid?.() === 0
  const ids = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
        gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
      }
    : {}
  if (asRoot) chownSync(dir, ids.uid as number, ids.gid as number)
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'corridor', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
    ...ids,
    stdio: 'ignore',
  })
  let child: ChildProcess | null = null

  const start = async (): Promise<void> => {
    const proc = spawn(
      join(bin, 'postgres'),
      [
        '-D',
        data,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        `unix_socket_directories=${dir}`,
        '-c',
        'fsync=off',
      ],
      { ...ids, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    )
    child = proc
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`postgres did not start: ${out}`)), 20_000)
      const onData = (chunk: Buffer): void => {
        out += chunk.toString()
        if (out.includes('database system is ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      }
      proc.stdout.on('data', onData)
      proc.stderr.on('data', onData)
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`postgres exited with ${code}: ${out}`))
      })
    })
  }
  const kill = async (): Promise<void> => {
    const proc = child
    if (proc === null || proc.exitCode !== null) return
    const exited = new Promise((r) => proc.once('exit', r))
    const group = proc.pid as number
    process.kill(-group, 'SIGKILL')
    await exited
    await noneRunningIn(group)
    child = null
  }
  await start()
  return {
    url: `postgres://corridor@127.0.0.1:${port}/postgres`,
    port,
    start,
    kill,
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * Resolves once no process of the group is left running (an exited one the system has not reaped
 * yet has closed its sockets already); throws after 5 s.
 */
async function noneRunningIn(group: number): Promise<void> {
  const deadline = Date.now() + 5_000
  for (;;) {
    const running = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .some((pid) => {
        try {
          // After the command name: state, parent, process group.
          const [state, , pgrp] = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
          return Number(pgrp) === group && state !== 'Z' && state !== 'X'
        } catch {
          return false // gone between listing and reading
        }
      })
    if (!running) return
    if (Date.now() > deadline) throw new Error(`processes of group ${group} still running 5 s after SIGKILL`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
