/**
 * SIGTERM with work in flight, against a real Corridor process, a real redis-server and a slow
 * upstream: readiness turns 503 first, the listener stops accepting, requests in flight (plain,
 * streaming, a release of an approved request) finish within the grace and are recorded as
 * forwarded, the release's result is stored for the agent to collect after a restart, and the
 * process exits within the grace. Past the grace, what is still in flight is cut and recorded as
 * cut by the shutdown, not as the agent leaving.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditRecord } from '../../src/audit/record.ts'
import { agentCall, approvalFiles, approve, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { eventually } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { freePort, startRedis, type RedisProcess } from '../../testkit/redis-process.ts'

let redis: RedisProcess
let upstream: RecordingUpstream
const children: ChildProcess[] = []

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startRecordingUpstream((req, res) => {
    const delay = Number(new URL(req.url, 'http://x').searchParams.get('delay') ?? 0)
    if (req.url.includes('stream')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      setTimeout(() => res.end('data: last\n\n'), delay)
      return
    }
    setTimeout(() => {
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ ran: req.method, url: req.url }))
    }, delay)
  })
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await upstream.close()
  await redis.stop()
})

interface Running {
  child: ChildProcess
  agentUrl: string
  adminUrl: string
  exited: Promise<{ code: number | null; at: number }>
}

async function writeSetup(grace: string): Promise<{ dir: string; config: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-shutdown-'))
  const files = approvalFiles(upstream.url)
  writeFileSync(join(dir, 'agents.yaml'), files.agents)
  writeFileSync(
    join(dir, 'connectors.yaml'),
    files.connectors
      .replace('timeouts: { connect: 1s, headers: 2s, body: 2s }', 'timeouts: { connect: 1s, headers: 10s, body: 10s }')
      .replace(
        '      - { name: items.list, method: GET, path: /items, risk: read }',
        '      - { name: items.list, method: GET, path: /items, risk: read }\n      - { name: items.stream, method: GET, path: /stream, risk: read }',
      ),
  )
  writeFileSync(
    join(dir, 'policy.yaml'),
    files.policy.replace('match: { actions: items.list }', 'match: { actions: [items.list, items.stream] }'),
  )
  const [agentPort, adminPort] = [await freePort(), await freePort()]
  const config = join(dir, 'corridor.yaml')
  writeFileSync(
    config,
    `listen: { host: 127.0.0.1, port: ${agentPort} }\nadmin: { host: 127.0.0.1, port: ${adminPort} }\n` +
      'files: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n' +
      `shutdown: { grace: ${grace} }\n` +
      `approvals:\n  redis: { url: "${redis.url}", key_prefix: "shutdown-${Date.now()}:" }\n  wait: 0s\n`,
  )
  return { dir, config }
}

async function startProcess(config: string): Promise<Running> {
  const child = spawn(process.execPath, [resolve('bin/corridor.js'), 'serve', '--config', config], {
    env: { ...process.env, SVC_TOKEN: 'shutdown-token', CORRIDOR_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  children.push(child)
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<{ code: number | null; at: number }>((r) =>
    child.once('exit', (code) => r({ code, at: Date.now() })),
  )
  let urls = { agentUrl: '', adminUrl: '' }
  await eventually(() => {
    const m = /"agentUrl":"([^"]+)","adminUrl":"([^"]+)"/.exec(stderr)
    expect(m).not.toBeNull()
    urls = { agentUrl: (m as RegExpExecArray)[1] as string, adminUrl: (m as RegExpExecArray)[2] as string }
  }, 15_000)
  return { child, ...urls, exited }
}

const records = (dir: string): AuditRecord[] =>
  readFileSync(join(dir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"type":"request"'))
    .map((l) => JSON.parse(l) as AuditRecord)

const get = (url: string) =>
  request(url, { headers: { authorization: `Bearer ${WRITER_KEY}` } }).then(async (res) => ({
    status: res.statusCode,
    body: await res.body.text(),
  }))

describe('SIGTERM with work in flight', () => {
  it(
    'fails readiness first, stops accepting, lets everything in flight finish, stores a release’s result, exits within the grace',
    { timeout: 60_000 },
    async () => {
      const { dir, config } = await writeSetup('10s')
      const first = await startProcess(config)
      const seen = upstream.received.length

      // A held request, approved: its release reaches the upstream (slowly) while Corridor stops.
      const held = await agentCall(first.agentUrl, WRITER_KEY, '/svc/items?delay=1500', {
        body: { qty: 77, note: 'release-in-flight' },
      })
      expect(held.body.code).toBe('approval_pending')
      const approvalId = held.body.approval_id as string

      const inFlight = [
        get(`${first.agentUrl}/svc/items?delay=1500&n=plain`),
        agentCall(first.agentUrl, WRITER_KEY, '/svc/items?delay=1500&n=post', { body: { qty: 2 } }).then((a) => ({
          status: a.status,
          body: JSON.stringify(a.body),
        })),
        get(`${first.agentUrl}/svc/stream?delay=1500`),
      ]
      expect((await approve(first.adminUrl, 'alice', approvalId)).status).toBe(200)
      await eventually(() => expect(upstream.received.length - seen).toBe(4), 5_000)

      const signalledAt = Date.now()
      first.child.kill('SIGTERM')
      // Readiness is the first thing to go.
      await eventually(async () => {
        const ready = await request(first.adminUrl + '/readyz')
        expect(ready.statusCode).toBe(503)
        expect(await ready.body.json()).toMatchObject({ draining: true })
      }, 2_000)
      // The listener no longer accepts connections.
      await eventually(async () => {
        await expect(
          request(first.agentUrl + '/svc/items', { headers: { authorization: `Bearer ${WRITER_KEY}` } }),
        ).rejects.toThrow()
      }, 2_000)

      const answers = await Promise.all(inFlight)
      expect(answers.map((a) => a.status)).toEqual([200, 201, 200])
      expect(answers[2]?.body).toBe('data: first\n\ndata: last\n\n')
      const { code, at } = await first.exited
      expect(code).toBe(0)
      expect(at - signalledAt).toBeLessThan(10_000)
      const outcomes = records(dir).map((r) => [r.path + (r.query ? `?${r.query}` : ''), r.outcome])
      expect(outcomes).toEqual(
        expect.arrayContaining([
          ['/items?delay=1500&n=plain', 'forwarded'],
          ['/items?delay=1500&n=post', 'forwarded'],
          ['/stream?delay=1500', 'forwarded'],
        ]),
      )
      expect(records(dir).some((r) => r.outcome === 'client_aborted' || r.outcome === 'shutdown')).toBe(false)

      // After a restart the agent collects the release's result: it ran once, and was not lost as unknown.
      const second = await startProcess(config)
      try {
        const collected = await agentCall(second.agentUrl, WRITER_KEY, '/svc/items?delay=1500', {
          body: { qty: 77, note: 'release-in-flight' },
          headers: { 'x-corridor-approval': approvalId },
        })
        expect(collected.status).toBe(201)
        expect(upstream.received.filter((r) => r.body.toString().includes('release-in-flight'))).toHaveLength(1)
      } finally {
        second.child.kill('SIGTERM')
        await second.exited
      }
    },
  )

  it(
    'past the grace, cuts what is still in flight and records it as cut by the shutdown',
    { timeout: 30_000 },
    async () => {
      const { dir, config } = await writeSetup('1s')
      const running = await startProcess(config)
      const slow = get(`${running.agentUrl}/svc/items?delay=8000&n=too-slow`).catch(() => ({ status: 0, body: '' }))
      await eventually(() => expect(upstream.received.some((r) => r.url.includes('too-slow'))).toBe(true), 5_000)
      const signalledAt = Date.now()
      running.child.kill('SIGTERM')
      expect((await slow).status).toBe(0)
      const { code, at } = await running.exited
      expect(code).toBe(0)
      expect(at - signalledAt).toBeLessThan(4_000)
      expect(records(dir).find((r) => r.query.includes('too-slow'))?.outcome).toBe('shutdown')
    },
  )
})
