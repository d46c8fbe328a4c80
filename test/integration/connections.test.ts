/**
 * The agent listener's edges: a client that dribbles its headers, or sits idle, is closed within
 * its documented deadline (± 1 s), and connections beyond the caps (in total, per client address)
 * get an immediate 503 while other clients keep being served. Distinct client addresses are
 * real: 127.0.0.2, .3… are all loopback on Linux.
 */
import { connect, type Socket } from 'node:net'
import { Client } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
let port: number
const opened: Socket[] = []

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      extraConfig:
        'limits: { headers_timeout: 2s, keep_alive_timeout: 2s, max_connections: 12, max_connections_per_client: 4 }\n',
    },
    { SVC_TOKEN: 'svc-upstream-token-0123456789' },
  )
  port = Number(new URL(fx.corridor.agentUrl).port)
})

afterAll(async () => {
  for (const s of opened) s.destroy()
  await fx.close()
  await upstream.close()
})

/** A raw connection from a given loopback address; resolves once connected. */
function open(localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => resolve(socket))
    socket.once('error', reject)
    opened.push(socket)
  })
}

/** Resolves with what the server sent and how long after `since` it closed the connection. */
function closed(socket: Socket, since: number): Promise<{ afterMs: number; received: string }> {
  let received = ''
  socket.on('data', (c: Buffer) => (received += c.toString()))
  return new Promise((resolve) => socket.once('close', () => resolve({ afterMs: Date.now() - since, received })))
}

describe('deadlines', () => {
  it('closes a connection dribbling its headers within headers_timeout (2 s) ± 1 s', async () => {
    const socket = await open('127.0.0.1')
    const since = Date.now()
    const done = closed(socket, since)
    socket.write('GET /svc/items HTTP/1.1\r\nHost: x\r\n')
    const dribble = setInterval(() => socket.writable && socket.write('X-Slow: y\r\n'), 200)
    const { afterMs } = await done
    clearInterval(dribble)
    expect(afterMs).toBeGreaterThanOrEqual(1_000)
    expect(afterMs).toBeLessThanOrEqual(3_000)
  })

  // Node keeps an idle connection 1 s past the timeout it advertises (Keep-Alive: timeout=2), so
  // that a client reusing it at the last moment does not meet a closed socket: 3 s, ± 1 s.
  it('closes a kept-alive connection idle for keep_alive_timeout (2 s) plus Node’s 1 s margin, ± 1 s', async () => {
    const socket = await open('127.0.0.1')
    let since = 0
    const done = new Promise<number>((resolve) => {
      socket.on('data', () => (since ||= Date.now()))
      socket.once('close', () => resolve(Date.now() - since))
    })
    socket.write(`GET /svc/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${AGENT_KEY}\r\n\r\n`)
    const idleFor = await done
    expect(idleFor).toBeGreaterThanOrEqual(2_000)
    expect(idleFor).toBeLessThanOrEqual(4_000)
  })
})

describe('connection caps', () => {
  it('refuses a client beyond its cap with 503 connection_limit at once, and keeps serving others', async () => {
    const flooder = await Promise.all([1, 2, 3, 4].map(() => open('127.0.0.2')))
    const since = Date.now()
    const fifth = await open('127.0.0.2')
    const { afterMs, received } = await closed(fifth, since)
    expect(received).toMatch(/^HTTP\/1\.1 503 /)
    expect(received).toContain('"code":"connection_limit"')
    expect(afterMs).toBeLessThan(1_000)

    // Another address is served while the flooder holds its four.
    const other = new Client(fx.corridor.agentUrl, { connect: { localAddress: '127.0.0.3' } })
    try {
      const res = await other.request({
        path: '/svc/items',
        method: 'GET',
        headers: { authorization: `Bearer ${AGENT_KEY}` },
      })
      expect(res.statusCode).toBe(200)
      await res.body.dump()
    } finally {
      await other.close()
    }
    // A slot freed is a slot the same client may use again.
    const freed = flooder[0] as Socket
    await new Promise<void>((r) => {
      freed.once('close', () => r())
      freed.destroy()
    })
    const again = new Client(fx.corridor.agentUrl, { connect: { localAddress: '127.0.0.2' } })
    try {
      await expect
        .poll(async () => {
          const res = await again.request({
            path: '/svc/items',
            method: 'GET',
            headers: { authorization: `Bearer ${AGENT_KEY}` },
          })
          await res.body.dump()
          return res.statusCode
        })
        .toBe(200)
    } finally {
      await again.close()
      for (const s of flooder) s.destroy()
    }
  })

  it('refuses beyond the total cap; under a flood of refused connections a normal client is served throughout (p50/p99 reported)', async () => {
    const hold: Socket[] = []
    for (const address of ['127.0.0.4', '127.0.0.5', '127.0.0.6'])
      for (let i = 0; i < 4; i++) hold.push(await open(address))
    const over = await open('127.0.0.7')
    expect((await closed(over, Date.now())).received).toContain('"code":"connection_limit"')
    await Promise.all(hold.map((s) => new Promise((r) => (s.once('close', r), s.destroy()))))

    // A flood from one address (refused beyond its four) while one normal client sends requests.
    let flooding = true
    const flood = (async () => {
      let refused = 0
      while (flooding) {
        const batch = await Promise.allSettled(Array.from({ length: 20 }, () => open('127.0.0.8')))
        for (const r of batch) if (r.status === 'fulfilled') r.value.destroy()
        refused += batch.length
      }
      return refused
    })()
    const normal = new Client(fx.corridor.agentUrl, { connect: { localAddress: '127.0.0.9' } })
    const latencies: number[] = []
    try {
      for (let i = 0; i < 200; i++) {
        const started = performance.now()
        const res = await normal.request({
          path: '/svc/items',
          method: 'GET',
          headers: { authorization: `Bearer ${AGENT_KEY}` },
        })
        await res.body.dump()
        expect(res.statusCode).toBe(200)
        latencies.push(performance.now() - started)
      }
    } finally {
      flooding = false
      await normal.close()
    }
    const attempts = await flood
    latencies.sort((a, b) => a - b)
    const p = (q: number) => (latencies[Math.floor(q * (latencies.length - 1))] as number).toFixed(1)
    console.log(`under a flood of ${attempts} connection attempts: normal client p50 ${p(0.5)} ms, p99 ${p(0.99)} ms`)
    expect(latencies).toHaveLength(200)
  })
})
