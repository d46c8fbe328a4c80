/**
 * An upstream host is judged by the addresses it resolves to, when the connection is made: a name
 * that resolves to a cloud metadata service (or any address Corridor never connects to) gets
 * nothing, not even a connection, and the agent a 502 naming why; the connection goes to the
 * address that was judged, so a name that resolves elsewhere later (DNS rebinding) is caught on
 * its next connection. DNS is stood in for by a table (the checks behind it are Corridor's own),
 * except in the last test, which goes through the system's resolver.
 */
import { createServer, type AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ResolveAll } from '../../src/shared/checked-lookup.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { agentCall, approvalFiles, approve, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { AGENT_KEY, newCanary, standardFiles } from '../helpers/standard-policy.ts'
import { tableResolver } from '../helpers/table-resolver.ts'

let upstream: RecordingUpstream
let connections: number
let fx: CorridorFixture | null = null
let token: string

beforeEach(async () => {
  // Every answer closes its connection, so every request makes a connection, and a lookup, of its own.
  upstream = await startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', connection: 'close' })
    res.end('{"ok":true}')
  })
  connections = 0
  upstream.server.on('connection', () => connections++)
  token = newCanary()
})

afterEach(async () => {
  await fx?.close()
  fx = null
  await upstream.close()
})

const port = (): string => new URL(upstream.url).port

/** A loopback port nothing listens on now, for a Corridor that must know its own port before it starts. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port: chosen } = probe.address() as AddressInfo
      probe.close(() => resolve(chosen))
    })
  })

async function corridorFor(host: string, resolve?: ResolveAll): Promise<CorridorFixture> {
  // Plain HTTP to a name: the connector says so, as the rule on credentials in clear asks.
  const files = standardFiles(`http://${host}:${port()}`, { connectorExtra: '    plaintext_beyond_loopback: true\n' })
  fx = await startCorridorFixture(files, { SVC_TOKEN: token }, { resolve })
  return fx
}

async function list(f: CorridorFixture) {
  const res = await request(`${f.corridor.agentUrl}/svc/items`, { headers: { 'x-api-key': AGENT_KEY } })
  return { status: res.statusCode, type: res.headers['content-type'], body: await res.body.text() }
}

describe('upstream hosts judged by what they resolve to', () => {
  it('a name that resolves to the metadata service gets nothing, and the agent a 502 that says why', async () => {
    const f = await corridorFor(
      'records.internal',
      tableResolver((h) => (h === 'records.internal' ? ['127.0.0.1', '169.254.169.254'] : null)),
    )
    const res = await list(f)
    expect(res.status).toBe(502)
    expect(res.type).toMatch(/^application\/problem\+json/)
    const problem = JSON.parse(res.body) as { code: string; detail: string }
    expect(problem.code).toBe('upstream_address_refused')
    expect(problem.detail).toBe(
      "the upstream's host resolved to an address Corridor never connects to (cloud_metadata); nothing was sent",
    )
    // Not even the allowed answer was connected to: one refused answer refuses the name.
    expect(connections).toBe(0)
    expect(upstream.received).toHaveLength(0)
    // The request's record (after its intent entry) is written as the response ends.
    await eventually(() =>
      expect(f.auditRecords().filter((r) => r.type === 'request')).toMatchObject([
        {
          error_code: 'upstream_address_refused',
          error_detail: 'cloud_metadata',
          outcome: 'upstream_error',
          status: 502,
        },
      ]),
    )
    // The operator's log names the host and the address; the credential appears nowhere.
    expect(f.logs.join('')).toContain("'records.internal' resolved to 169.254.169.254 (cloud_metadata)")
    expect(f.allOutput() + res.body).not.toContain(token)
  })

  it('the connection goes to the address that was judged', async () => {
    // records.internal exists only in this table: the request can reach the upstream only through it.
    const f = await corridorFor(
      'records.internal',
      tableResolver((h) => (h === 'records.internal' ? ['127.0.0.1'] : null)),
    )
    const res = await list(f)
    expect(res.status).toBe(200)
    expect(upstream.received).toHaveLength(1)
    expect(upstream.received[0]?.headers.authorization).toBe(`Bearer ${token}`)
  })

  it('a name rebound to a refused address is caught on its next connection', async () => {
    let lookups = 0
    const f = await corridorFor(
      'records.internal',
      tableResolver(() => (++lookups === 1 ? ['127.0.0.1'] : ['::ffff:169.254.169.254'])),
    )
    expect((await list(f)).status).toBe(200)
    const second = await list(f)
    expect(second.status).toBe(502)
    expect((JSON.parse(second.body) as { code: string }).code).toBe('upstream_address_refused')
    expect(lookups).toBe(2)
    expect(upstream.received).toHaveLength(1)
    expect(connections).toBe(1)
  })

  it('a name that does not resolve is unreachable, and a resolver that stalls is cut at the connect timeout', async () => {
    const f = await corridorFor(
      'records.internal',
      tableResolver(() => null),
    )
    const missing = await list(f)
    expect(missing.status).toBe(502)
    expect((JSON.parse(missing.body) as { code: string }).code).toBe('upstream_unreachable')
    await f.close()
    // Never answers: the connector's connect timeout (1 s here) covers the lookup as well.
    const g = await corridorFor('records.internal', () => {})
    const started = performance.now()
    const stalled = await list(g)
    expect(stalled.status).toBe(504)
    expect((JSON.parse(stalled.body) as { code: string }).code).toBe('upstream_timeout')
    expect(performance.now() - started).toBeGreaterThanOrEqual(900)
    expect(connections).toBe(0)
  })

  it('the release of an approved request is judged the same way, and stores the refusal for the agent', async () => {
    const files = approvalFiles(`http://records.internal:${port()}`, 'approvals: { wait: 0s }\n')
    files.connectors = files.connectors.replace(
      '    credential:',
      '    plaintext_beyond_loopback: true\n    credential:',
    )
    fx = await startCorridorFixture(
      files,
      { SVC_TOKEN: token },
      { resolve: tableResolver(() => ['64:ff9b::a9fe:a9fe']) }, // NAT64 of the metadata service
    )
    const f = fx
    const held = await agentCall(f.corridor.agentUrl, WRITER_KEY, '/svc/items', { body: { qty: 50 } })
    expect(held.status).toBe(503)
    const id = held.body.approval_id as string
    expect((await approve(f.corridor.adminUrl, 'alice', id)).status).toBe(200)
    await eventually(async () => {
      const collected = await agentCall(f.corridor.agentUrl, WRITER_KEY, '/svc/items', {
        body: { qty: 50 },
        headers: { 'x-corridor-approval': id },
      })
      expect(collected.status).toBe(502)
      expect(collected.body.code).toBe('upstream_address_refused')
    }, 5_000)
    expect(f.auditRecords().find((r) => r.approval?.state === 'executed')).toMatchObject({
      error_code: 'upstream_address_refused',
      error_detail: 'cloud_metadata',
      outcome: 'upstream_error',
    })
    expect(connections).toBe(0)
    expect(f.allOutput()).not.toContain(token)
  })

  it('an upstream written as a refused address does not start', async () => {
    await expect(corridorFor('169.254.169.254')).rejects.toThrow(
      'connectors[0].upstream is an address Corridor never connects to (169.254.169.254: cloud_metadata)',
    )
    await expect(corridorFor('0.0.0.0')).rejects.toThrow(
      'connectors[0].upstream is an address Corridor never connects to (0.0.0.0: unspecified)',
    )
  })

  it("an upstream that leads back to Corridor's own listener is refused, by name or by address, and nothing loops", async () => {
    const own = await freePort()
    const looping = async (origin: string, resolve?: ResolveAll): Promise<CorridorFixture> => {
      fx = await startCorridorFixture(
        {
          ...standardFiles(origin, { connectorExtra: '    plaintext_beyond_loopback: true\n' }),
          listenConfig: `listen: { host: 127.0.0.1, port: ${own} }`,
        },
        { SVC_TOKEN: token },
        { resolve },
      )
      return fx
    }
    const byNameAndByAddress: [string, ResolveAll | undefined][] = [
      [`http://records.internal:${own}`, tableResolver(() => ['::ffff:127.0.0.1'])],
      [`http://127.0.0.1:${own}`, undefined],
    ]
    for (const [origin, resolve] of byNameAndByAddress) {
      const f = await looping(origin, resolve)
      const res = await list(f)
      expect(res.status).toBe(502)
      const problem = JSON.parse(res.body) as { code: string; detail: string }
      expect(problem).toMatchObject({
        code: 'upstream_address_refused',
        detail: "the upstream's host leads back to Corridor's own listener (corridor_itself), a loop; nothing was sent",
      })
      // One request reached Corridor: the agent's. A loop would have brought a second.
      await eventually(() =>
        expect(f.auditRecords().filter((r) => r.type === 'request')).toMatchObject([
          { error_code: 'upstream_address_refused', error_detail: 'corridor_itself', path: '/items' },
        ]),
      )
      expect(f.logs.join('')).toMatch(/leads to (::ffff:)?127\.0\.0\.1, where Corridor itself listens on that port/)
      expect(f.allOutput()).not.toContain(token)
      await f.close()
      fx = null
    }
    // The same loopback address on another port (the upstream's) is not Corridor: forwarded.
    const other = await looping(`http://127.0.0.1:${port()}`)
    expect((await list(other)).status).toBe(200)
    expect(upstream.received).toHaveLength(1)
  })

  it("through the system's resolver, a name it resolves to loopback is forwarded", async () => {
    const f = await corridorFor('localhost')
    const res = await list(f)
    expect(res.status).toBe(200)
    expect(upstream.received).toHaveLength(1)
  })
})
