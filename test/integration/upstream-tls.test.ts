/**
 * An upstream over TLS, with Corridor as a real process (Node reads NODE_EXTRA_CA_CERTS and
 * NODE_TLS_REJECT_UNAUTHORIZED from the process's environment): a private CA given with
 * NODE_EXTRA_CA_CERTS is trusted and the credential arrives; without it the certificate does not
 * verify, the agent gets a 502 with its own code, and the upstream never receives a request (so
 * never the credential); with certificate checks turned off Corridor does not start at all.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeCertificates, type Certificates } from '../helpers/certificates.ts'
import { eventually } from '../helpers/corridor-fixture.ts'
import { AGENT_KEY, hash, newCanary } from '../helpers/standard-policy.ts'

const CREDENTIAL = newCanary()
let certs: Certificates
let upstream: Server
let upstreamUrl: string
/** Requests the upstream received, and TLS handshakes that failed on its side. */
const received: { authorization: string | undefined; agentKeySeen: boolean }[] = []
let failedHandshakes = 0
const children: ChildProcess[] = []

beforeAll(async () => {
  certs = makeCertificates(mkdtempSync(join(tmpdir(), 'corridor-upstream-tls-')))
  upstream = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) => {
    received.push({
      authorization: req.headers.authorization,
      agentKeySeen: JSON.stringify(req.headers).includes(AGENT_KEY),
    })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"over":"tls"}')
  })
  upstream.on('tlsClientError', () => failedHandshakes++)
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  upstream.closeAllConnections()
  await new Promise<void>((r) => upstream.close(() => r()))
})

function writeSetup(): string {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-upstream-tls-'))
  writeFileSync(
    join(dir, 'agents.yaml'),
    `agents:\n  - { id: tls-agent, owner: qa, tier: read-only, connectors: [records], api_keys: [{ hash: "${hash(AGENT_KEY)}" }] }\n`,
  )
  writeFileSync(
    join(dir, 'connectors.yaml'),
    `connectors:
  - id: records
    owner: qa
    upstream: ${upstreamUrl}/api
    certified_until: 2099-01-01
    credential: { source: env, env: RECORDS_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    timeouts: { connect: 2s, headers: 2s, body: 2s }
    actions:
      - { name: items.list, method: GET, path: /items, risk: read }
`,
  )
  writeFileSync(
    join(dir, 'policy.yaml'),
    'version: 1\nrules:\n  - { id: read, effect: allow, match: { connectors: records } }\n',
  )
  writeFileSync(
    join(dir, 'corridor.yaml'),
    'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n' +
      'files: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n',
  )
  return dir
}

interface Started {
  child: ChildProcess
  stderr: () => string
  exited: Promise<number | null>
}

function start(dir: string, env: Record<string, string>): Started {
  // What the test runner's own environment says about TLS must not decide the case.
  const { NODE_EXTRA_CA_CERTS: _ca, NODE_TLS_REJECT_UNAUTHORIZED: _reject, ...inherited } = process.env
  const child = spawn(process.execPath, [resolve('bin/corridor.js'), 'serve', '--config', join(dir, 'corridor.yaml')], {
    env: { ...inherited, RECORDS_TOKEN: CREDENTIAL, CORRIDOR_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let output = ''
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  return { child, stderr: () => output, exited }
}

async function agentUrlOf(s: Started): Promise<string> {
  let url = ''
  await eventually(() => {
    const m = /"agentUrl":"([^"]+)"/.exec(s.stderr())
    expect(m).not.toBeNull()
    url = (m as RegExpExecArray)[1] as string
  }, 15_000)
  return url
}

async function stop(s: Started): Promise<void> {
  s.child.kill('SIGTERM')
  await s.exited
}

const listItems = (agentUrl: string) =>
  request(`${agentUrl}/records/items`, { headers: { authorization: `Bearer ${AGENT_KEY}` } }).then(async (res) => ({
    status: res.statusCode,
    type: res.headers['content-type'],
    body: await res.body.text(),
  }))

describe('an upstream over TLS', () => {
  it(
    'trusts a private CA given with NODE_EXTRA_CA_CERTS: the credential arrives, the agent key does not',
    { timeout: 30_000 },
    async () => {
      const s = start(writeSetup(), { NODE_EXTRA_CA_CERTS: certs.ca })
      const before = received.length
      const res = await listItems(await agentUrlOf(s))
      expect(res.status).toBe(200)
      expect(JSON.parse(res.body)).toEqual({ over: 'tls' })
      expect(received.slice(before)).toEqual([{ authorization: `Bearer ${CREDENTIAL}`, agentKeySeen: false }])
      await stop(s)
    },
  )

  it(
    'refuses a certificate that does not verify with its own code, before any byte of the request is sent',
    { timeout: 30_000 },
    async () => {
      const dir = writeSetup()
      const s = start(dir, {})
      const [before, handshakesBefore] = [received.length, failedHandshakes]
      const res = await listItems(await agentUrlOf(s))
      expect(res.status).toBe(502)
      expect(res.type).toMatch(/^application\/problem\+json/)
      const problem = JSON.parse(res.body) as { code: string; detail: string }
      expect(problem.code).toBe('upstream_certificate_rejected')
      expect(problem.detail).toContain('nothing was sent')
      // The upstream saw a handshake fail and no request; the credential went nowhere.
      await eventually(() => expect(failedHandshakes).toBeGreaterThan(handshakesBefore))
      expect(received.length).toBe(before)
      expect(res.body).not.toContain(CREDENTIAL)
      await stop(s)
      const audit = readFileSync(join(dir, 'audit.log'), 'utf8')
      const record = audit
        .split('\n')
        .filter((l) => l.startsWith('{"type":"request"'))
        .map((l) => JSON.parse(l) as { error_code: string; outcome: string; status: number })
      expect(record).toMatchObject([
        { error_code: 'upstream_certificate_rejected', outcome: 'upstream_error', status: 502 },
      ])
      expect(audit + s.stderr()).not.toContain(CREDENTIAL)
    },
  )

  it('does not start with NODE_TLS_REJECT_UNAUTHORIZED=0, and says why', { timeout: 30_000 }, async () => {
    const s = start(writeSetup(), { NODE_TLS_REJECT_UNAUTHORIZED: '0' })
    expect(await s.exited).toBe(1)
    expect(s.stderr()).toContain('NODE_TLS_REJECT_UNAUTHORIZED=0 turns off certificate checks')
    expect(s.stderr()).not.toContain('agentUrl')
  })
})
