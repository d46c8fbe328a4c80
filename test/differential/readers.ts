/**
 * The real parsers of the stacks systems of record run on, each turned into "what would an
 * application see": Express with qs and body-parser (in process, as the recording upstream
 * itself), Ruby Rack, Python werkzeug and Go net/http (batch processes over stdin), and the JDK's
 * HTTP server with servlet-style parameter decoding (a server the raw bytes are replayed to).
 * A reader whose runtime is missing on this machine is reported, not silently skipped.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import express from 'express'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'

const HERE = new URL('./readers/', import.meta.url).pathname

/** What one parser made of a request. Query and form are nested (qs, Rack) or flat multimaps. */
export interface Reading {
  error?: string
  method?: string
  path?: string
  query?: unknown
  form?: unknown
  json?: unknown
  headers?: Record<string, string | string[] | undefined>
}

/** A request exactly as the upstream received it. */
export interface ReceivedRaw {
  method: string
  url: string
  rawHeaders: string[]
  body: Buffer
  express: Reading
}

export interface ExpressUpstream {
  url: string
  received: ReceivedRaw[]
  close(): Promise<void>
}

/** The recording upstream is an Express 5 application with the extended (qs) query parser and body-parser. */
export async function startExpressUpstream(): Promise<ExpressUpstream> {
  const received: ReceivedRaw[] = []
  const app = express()
  app.set('query parser', 'extended')
  const keep = (req: express.Request, _res: unknown, buf: Buffer): void => {
    ;(req as express.Request & { rawBody?: Buffer }).rawBody = Buffer.from(buf)
  }
  app.use(
    express.json({
      verify: keep,
      strict: false,
      type: (req) => /json/i.test(String(req.headers['content-type'] ?? '')),
    }),
  )
  app.use(express.urlencoded({ extended: true, verify: keep }))
  app.use(express.raw({ type: () => true, verify: keep, limit: '1mb' }))
  app.use((req, res) => {
    const rawBody = (req as express.Request & { rawBody?: Buffer }).rawBody ?? Buffer.alloc(0)
    const type = String(req.headers['content-type'] ?? '').toLowerCase()
    const reading: Reading = { method: req.method, path: req.path, query: req.query, headers: req.headers }
    if (type.startsWith('application/x-www-form-urlencoded')) reading.form = req.body
    else if (type.includes('json') && rawBody.length > 0) reading.json = req.body
    received.push({
      method: req.method,
      url: req.originalUrl,
      rawHeaders: req.rawHeaders,
      body: rawBody,
      express: reading,
    })
    res.json({ ok: true })
  })
  app.use((err: Error, req: express.Request, res: express.Response, _next: unknown) => {
    received.push({
      method: req.method,
      url: req.originalUrl,
      rawHeaders: req.rawHeaders,
      body: Buffer.alloc(0),
      express: { error: err.message },
    })
    res.status(400).json({ express_error: err.message })
  })
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export function rawBytes(r: ReceivedRaw): Buffer {
  let head = `${r.method} ${r.url} HTTP/1.1\r\n`
  for (let i = 0; i < r.rawHeaders.length; i += 2) head += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), r.body])
}

function jsonLine(r: ReceivedRaw): string {
  const headers: [string, string][] = []
  for (let i = 0; i < r.rawHeaders.length; i += 2)
    headers.push([r.rawHeaders[i] as string, r.rawHeaders[i + 1] as string])
  return JSON.stringify({ method: r.method, target: r.url, headers, body: r.body.toString('base64') })
}

export interface BatchReader {
  readonly name: string
  /** Why it cannot run here, or null. */
  readonly unavailable: string | null
  read(requests: readonly ReceivedRaw[]): Promise<Reading[]>
}

function runBatch(command: string, args: readonly string[], input: string): Reading[] {
  const result = spawnSync(command, args, { input, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120_000 })
  if (result.status !== 0) throw new Error(`${command} exited ${result.status}: ${result.stderr.slice(0, 500)}`)
  return result.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Reading)
}

function has(command: string, args: readonly string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore', timeout: 30_000 }).status === 0
}

export function rackReader(): BatchReader {
  const unavailable = has('ruby', ['-e', 'require "rack"; require "rack/mock"'])
    ? null
    : 'ruby with rack is not installed (Debian: ruby-rack)'
  return {
    name: 'Ruby Rack',
    unavailable,
    read: async (rs) => runBatch('ruby', [join(HERE, 'rack_reader.rb')], rs.map(jsonLine).join('\n') + '\n'),
  }
}

export function werkzeugReader(): BatchReader {
  // Debian's python3 (python3-werkzeug), not whatever python3 a version manager puts first.
  const python = has('/usr/bin/python3', ['-c', 'import werkzeug'])
    ? '/usr/bin/python3'
    : has('python3', ['-c', 'import werkzeug'])
      ? 'python3'
      : null
  return {
    name: 'Python werkzeug',
    unavailable: python === null ? 'python3 with werkzeug is not installed (Debian: python3-werkzeug)' : null,
    read: async (rs) =>
      runBatch(python as string, [join(HERE, 'werkzeug_reader.py')], rs.map(jsonLine).join('\n') + '\n'),
  }
}

export function goReader(): BatchReader {
  const unavailable = has('go', ['version']) ? null : 'go is not installed (Debian: golang-go)'
  return {
    name: 'Go net/http',
    unavailable,
    read: async (rs) => {
      const dir = mkdtempSync(join(tmpdir(), 'corridor-go-'))
      execFileSync('go', ['build', '-o', join(dir, 'reader'), join(HERE, 'go_reader.go')], {
        env: { ...process.env, GOCACHE: join(tmpdir(), 'corridor-go-cache'), GO111MODULE: 'off' },
        timeout: 300_000,
      })
      return runBatch(join(dir, 'reader'), [], rs.map((r) => rawBytes(r).toString('base64')).join('\n') + '\n')
    },
  }
}

export function javaReader(): BatchReader {
  const unavailable =
    has('javac', ['-version']) && has('java', ['-version'])
      ? null
      : 'a JDK is not installed (Debian: default-jdk-headless)'
  return {
    name: 'Java (JDK HttpServer, servlet-style parameters)',
    unavailable,
    read: async (rs) => {
      const dir = mkdtempSync(join(tmpdir(), 'corridor-java-'))
      execFileSync('javac', ['-d', dir, join(HERE, 'JavaReader.java')], { timeout: 120_000 })
      const child: ChildProcess = spawn('java', ['-cp', dir, 'JavaReader'], { stdio: ['ignore', 'pipe', 'inherit'] })
      try {
        const port = await new Promise<number>((resolve, reject) => {
          child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
          child.once('exit', (code) => reject(new Error(`java exited ${code}`)))
        })
        const out: Reading[] = []
        for (const r of rs) out.push(await replay(port, r))
        return out
      } finally {
        child.kill('SIGKILL')
      }
    },
  }
}

/** Sends the raw bytes to a local server and reads its JSON answer (the connection is closed after one request). */
function replay(port: number, r: ReceivedRaw): Promise<Reading> {
  const headers: string[] = []
  for (let i = 0; i < r.rawHeaders.length; i += 2)
    if ((r.rawHeaders[i] as string).toLowerCase() !== 'connection')
      headers.push(r.rawHeaders[i] as string, r.rawHeaders[i + 1] as string)
  const bytes = rawBytes({ ...r, rawHeaders: [...headers, 'Connection', 'close'] })
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(bytes))
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.setTimeout(10_000, () => socket.destroy(new Error('java reader timed out')))
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const body = text.slice(text.indexOf('\r\n\r\n') + 4)
      try {
        resolve(JSON.parse(body) as Reading)
      } catch {
        resolve({ error: `unreadable answer: ${text.slice(0, 200)}` })
      }
    })
  })
}
