/**
 * A real redis-server for one test file: ephemeral loopback port, its own directory, AOF with
 * fsync on every write (the settings the README asks operators for). It can be killed and
 * restarted on the same port and directory to prove what survives.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisProcess {
  readonly url: string
  readonly port: number
  start(): Promise<void>
  /** SIGKILL: no shutdown save, only what the AOF already holds survives. */
  kill(): Promise<void>
  /** SIGSTOP: Redis stalls, its sockets stay open, commands queue on them and run at resume. */
  pause(): void
  /** SIGCONT. */
  resume(): void
  stop(): Promise<void>
}

/** `appendonly: false` starts a Redis that keeps nothing across a restart (to prove Corridor notices). */
export async function startRedis(options: { appendonly?: boolean } = {}): Promise<RedisProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-redis-'))
  const port = await freePort()
  let child: ChildProcess | null = null

  const start = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        options.appendonly === false ? 'no' : 'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--protected-mode',
        'yes',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = proc
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000)
      proc.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited (${code}): ${out}`))
      })
    })
  }

  const signal = (name: NodeJS.Signals): void => {
    if (child === null || child.exitCode !== null) throw new Error(`redis-server is not running (${name})`)
    child.kill(name)
  }

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const proc = child
    child = null
    if (proc === null || proc.exitCode !== null) return
    // A stopped process only acts on SIGTERM once continued.
    proc.kill('SIGCONT')
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve())
      proc.kill(signal)
    })
  }

  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    kill: () => kill('SIGKILL'),
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    async stop() {
      await kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}
