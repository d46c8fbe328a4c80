/**
 * The agent listener over TLS: an unmodified SDK (OpenAI, streaming) reaches Corridor at an
 * https:// base URL; plain HTTP is not answered; a renewed certificate is served without a
 * restart, and a broken renewal leaves the previous certificate in force.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import OpenAI from 'openai'
import { Agent, fetch as undiciFetch, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeCertificates, renewServerCertificate, type Certificates } from '../helpers/certificates.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture
let certs: Certificates
let certDir: string
let trusting: Agent

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'corridor-agent-tls-'))
  certs = makeCertificates(certDir)
  upstream = await startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'over' }, finish_reason: null }] })}\n\n`,
    )
    res.write(
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: ' TLS' }, finish_reason: null }] })}\n\n`,
    )
    res.end('data: [DONE]\n\n')
  })
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: tls-agent, owner: qa, tier: read-only, connectors: [openai], api_keys: [{ hash: "${hash(AGENT_KEY)}" }] }\n`,
      connectors: `connectors:
  - id: openai
    owner: qa
    upstream: ${upstream.url}/v1
    certified_until: 2099-01-01
    credential: { source: env, env: OPENAI, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: chat.create, method: POST, path: /chat/completions, risk: read }
`,
      policy: 'version: 1\nrules:\n  - { id: chat, effect: allow, match: { connectors: openai } }\n',
      listenConfig: `listen: { host: 127.0.0.1, port: 0, tls: { cert_file: ${JSON.stringify(certs.cert)}, key_file: ${JSON.stringify(certs.key)} } }`,
    },
    { OPENAI: 'sk-upstream-over-tls' },
  )
  trusting = new Agent({ connect: { ca: readFileSync(certs.ca) } })
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
  await trusting.close()
})

/** The serial number of the certificate the listener presents now. */
function servedSerial(): Promise<string> {
  const { port } = new URL(fx.corridor.agentUrl)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(certs.ca) }, () => {
      resolve(socket.getPeerCertificate().serialNumber)
      socket.end()
    })
    socket.once('error', reject)
  })
}

describe('the agent listener over TLS', () => {
  it('serves an unmodified SDK at an https:// base URL, streaming', async () => {
    expect(fx.corridor.agentUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const client = new OpenAI({
      apiKey: AGENT_KEY,
      baseURL: `${fx.corridor.agentUrl}/openai`,
      maxRetries: 0,
      // The SDK's own fetch, from the undici whose Agent trusts the test CA.
      fetch: undiciFetch as unknown as typeof fetch,
      fetchOptions: { dispatcher: trusting } as OpenAI['fetchOptions'],
    })
    const stream = await client.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    expect(text).toBe('over TLS')
    expect(upstream.received[0]?.headers.authorization).toBe('Bearer sk-upstream-over-tls')
    // Plain HTTP on the TLS port gets no HTTP answer.
    await expect(
      request(fx.corridor.agentUrl.replace('https:', 'http:') + '/openai/chat/completions').then((r) => r.body.text()),
    ).rejects.toThrow()
  })

  it('serves a renewed certificate without a restart, and keeps the last good one when a renewal is broken', async () => {
    const before = await servedSerial()
    renewServerCertificate(certDir, certs)
    let renewed = before
    await eventually(async () => {
      renewed = await servedSerial()
      expect(renewed).not.toBe(before)
    }, 5_000)
    // A half-written renewal (garbage where the certificate should be) is refused; the renewed one stays.
    writeFileSync(certs.cert, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n')
    await eventually(() => expect(fx.logs.join('')).toContain('TLS certificate change could not be loaded'), 5_000)
    expect(await servedSerial()).toBe(renewed)
  })
})
