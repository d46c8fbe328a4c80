/**
 * Retries that do not look identical still join their approval: a client that puts a fresh
 * request id in a header on every attempt (as Microsoft's SDKs do with x-ms-client-request-id,
 * and this connector's SDK with a header it declares), behind a front (a load balancer) that gives
 * up before `approvals.wait` ends and answers 504, so the client retries while the first attempt
 * is still held. However many attempts, one approval and one execution.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import {
  APPROVER_KEYS,
  WRITER_KEY,
  approvalFiles,
  approveWhenPending,
  heldEvents,
} from '../helpers/approvals-fixture.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
let front: Server
let frontUrl: string

beforeAll(async () => {
  upstream = await startRecordingUpstream((_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' })
    res.end('{"created":true}')
  })
  const files = approvalFiles(upstream.url, 'approvals: { wait: 3s }\n')
  fx = await startCorridorFixture(
    {
      ...files,
      connectors: files.connectors.replace(
        '    certified_until: 2099-12-31',
        '    per_attempt_headers: [x-attempt-nonce]\n    certified_until: 2099-12-31',
      ),
    },
    { SVC_TOKEN: 'retries-join-token' },
  )
  // The front: forwards to Corridor, and answers 504 when Corridor has not answered within 500 ms.
  front = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      request(fx.corridor.agentUrl + (req.url ?? '/'), {
        method: req.method as 'POST',
        headers: req.headers as Record<string, string>,
        body: Buffer.concat(chunks),
        headersTimeout: 500,
      }).then(
        async (answer) => {
          res.writeHead(answer.statusCode, { 'content-type': answer.headers['content-type'] as string })
          res.end(Buffer.from(await answer.body.arrayBuffer()))
        },
        () => {
          res.writeHead(504, { 'content-type': 'text/plain' })
          res.end('upstream timed out')
        },
      )
    })
  })
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r))
  frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`
})

afterAll(async () => {
  await new Promise((r) => front.close(r))
  await fx.close()
  await upstream.close()
})

it('a client with fresh request ids on every attempt, behind a front that times out first: one approval, one execution', async () => {
  const body = JSON.stringify({ qty: 40, note: 'fresh-ids' })
  const statuses: number[] = []
  const client = (async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const res = await request(`${frontUrl}/svc/items`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${WRITER_KEY}`,
          'content-type': 'application/json',
          'x-ms-client-request-id': randomUUID(),
          'x-attempt-nonce': randomUUID(),
        },
        body,
      })
      await res.body.dump()
      statuses.push(res.statusCode)
      if (res.statusCode === 201) return
      await new Promise((r) => setTimeout(r, 200))
    }
  })()
  await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEYS.alice, 'svc', 'fresh-ids', 1_500)
  await client
  expect(statuses.at(-1)).toBe(201)
  // At least one attempt was cut by the front while held; the retries that followed joined it.
  expect(statuses).toContain(504)
  expect(statuses.length).toBeGreaterThanOrEqual(2)
  expect(upstream.received.filter((r) => r.body.toString().includes('fresh-ids'))).toHaveLength(1)
  expect(heldEvents(fx.allOutput(), 'svc')).toHaveLength(1)
})
