/**
 * Unmodified client SDKs from npm, pointed at Corridor as their base URL with a Corridor agent
 * key as their "API key", against stand-in upstreams that record what they received.
 */
import { createHash } from 'node:crypto'
import { Octokit } from '@octokit/rest'
import OpenAI from 'openai'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { newCanary } from '../helpers/standard-policy.ts'

const AGENT_KEY = 'cor_sdk_agent_key'
const hash = `sha256:${createHash('sha256').update(AGENT_KEY).digest('hex')}`
const canaries = { github: newCanary(), stripe: newCanary(), openai: newCanary() }

let github: RecordingUpstream
let stripe: RecordingUpstream
let openai: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  github = await startRecordingUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(
      req.url.endsWith('/issues') && req.method === 'POST'
        ? JSON.stringify({ number: 12, title: JSON.parse(req.body.toString()).title })
        : JSON.stringify([{ number: 1, title: 'first' }]),
    )
  })
  stripe = await startRecordingUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_1' })
    res.end(
      JSON.stringify({
        id: 're_1',
        object: 'refund',
        amount: Number(new URLSearchParams(req.body.toString()).get('amount')),
        status: 'succeeded',
      }),
    )
  })
  openai = await startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const words = ['Hello', ' from', ' the', ' stand-in']
    let i = 0
    const tick = setInterval(() => {
      if (i < words.length) {
        res.write(
          `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: words[i] }, finish_reason: null }] })}\n\n`,
        )
        i++
      } else {
        clearInterval(tick)
        res.end('data: [DONE]\n\n')
      }
    }, 40)
  })
  fx = await startCorridorFixture(
    {
      agents: `agents:
  - { id: sdk-agent, owner: qa, tier: transactional, connectors: [github, stripe, openai], api_keys: [{ hash: "${hash}" }] }
`,
      connectors: `connectors:
  - id: github
    owner: qa
    upstream: ${github.url}
    certified_until: 2099-01-01
    credential: { source: env, env: GH, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: issues.list, method: GET, path: "/repos/{owner}/{repo}/issues", risk: read }
      - { name: issues.create, method: POST, path: "/repos/{owner}/{repo}/issues", risk: write }
  - id: stripe
    owner: qa
    upstream: ${stripe.url}
    hosts: [localhost]
    certified_until: 2099-01-01
    credential: { source: env, env: STRIPE, inject: { basic: { username: "{secret}", password: "" } } }
    actions:
      - { name: refunds.create, method: POST, path: /v1/refunds, risk: transactional }
  - id: openai
    owner: qa
    upstream: ${openai.url}/v1
    certified_until: 2099-01-01
    credential: { source: env, env: OPENAI, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: chat.create, method: POST, path: /chat/completions, risk: write }
`,
      policy: `version: 1
rules:
  - { id: gh, effect: allow, match: { connectors: github, params: { owner: acme } } }
  - { id: refunds-small, effect: allow, match: { connectors: stripe, body: { amount: { lte: 5000 } } } }
  - { id: chat, effect: allow, match: { connectors: openai, body: { model: [gpt-4o-mini] } } }
`,
    },
    { GH: canaries.github, STRIPE: canaries.stripe, OPENAI: canaries.openai },
  )
})

afterAll(async () => {
  await fx.close()
  await Promise.all([github.close(), stripe.close(), openai.close()])
  const output = fx.allOutput()
  for (const c of Object.values(canaries)) expect(output).not.toContain(c)
})

function agentKeyNeverArrived(upstream: RecordingUpstream): void {
  for (const r of upstream.received) expect(JSON.stringify(r.rawHeaders) + r.body.toString()).not.toContain(AGENT_KEY)
}

describe('@octokit/rest', () => {
  it('lists and creates issues through Corridor', async () => {
    const octokit = new Octokit({ auth: AGENT_KEY, baseUrl: `${fx.corridor.agentUrl}/github`, request: { retries: 0 } })
    const list = await octokit.rest.issues.listForRepo({ owner: 'acme', repo: 'app' })
    expect(list.data[0]?.title).toBe('first')
    const created = await octokit.rest.issues.create({ owner: 'acme', repo: 'app', title: 'from an agent' })
    expect(created.data.number).toBe(12)
    expect(github.received.map((r) => `${r.method} ${r.url}`)).toEqual([
      'GET /repos/acme/app/issues',
      'POST /repos/acme/app/issues',
    ])
    for (const r of github.received) expect(r.headers.authorization).toBe(`Bearer ${canaries.github}`)
    agentKeyNeverArrived(github)
  })

  it('surfaces a policy denial as an SDK error with the problem body', async () => {
    const octokit = new Octokit({ auth: AGENT_KEY, baseUrl: `${fx.corridor.agentUrl}/github`, request: { retries: 0 } })
    const before = github.received.length
    const err = (await octokit.rest.issues
      .listForRepo({ owner: 'someone-else', repo: 'app' })
      .catch((e: unknown) => e)) as { status: number; response: { data: unknown } }
    expect(err.status).toBe(403)
    expect((err.response.data as { code: string }).code).toBe('policy_denied')
    expect(github.received.length).toBe(before)
  })
})

describe('stripe', () => {
  it('creates a refund with a form body that the policy reads', async () => {
    // stripe-node takes a host, not a base URL: Corridor routes it by Host.
    const client = new Stripe(AGENT_KEY, {
      host: 'localhost',
      port: Number(new URL(fx.corridor.agentUrl).port),
      protocol: 'http',
      maxNetworkRetries: 0,
    })
    const refund = await client.refunds.create({ charge: 'ch_1', amount: 1200 })
    expect(refund.amount).toBe(1200)
    const seen = stripe.received[0]!
    expect(seen.url).toBe('/v1/refunds')
    expect(seen.headers.authorization).toBe('Basic ' + Buffer.from(`${canaries.stripe}:`).toString('base64'))
    expect(new URLSearchParams(seen.body.toString()).get('amount')).toBe('1200')
    const denied = await client.refunds.create({ charge: 'ch_1', amount: 900000 }).then(
      () => ({ statusCode: 0, message: 'unexpectedly allowed' }),
      (e: unknown) => e as { statusCode: number; message: string },
    )
    expect(denied.statusCode).toBe(403)
    expect(denied.message).toContain('no rule allows')
    expect(stripe.received).toHaveLength(1)
    agentKeyNeverArrived(stripe)
  })
})

describe('openai', () => {
  it('streams a chat completion as the upstream produces it', async () => {
    const client = new OpenAI({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/openai`, maxRetries: 0 })
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    })
    const arrivals: number[] = []
    let text = ''
    for await (const chunk of stream) {
      arrivals.push(Date.now())
      text += chunk.choices[0]?.delta.content ?? ''
    }
    expect(text).toBe('Hello from the stand-in')
    // Chunks arrive spread out as produced (40 ms apart upstream), not all at once at the end.
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThanOrEqual(80)
    expect(openai.received[0]!.headers.authorization).toBe(`Bearer ${canaries.openai}`)
    agentKeyNeverArrived(openai)
  })
})
