/**
 * What unmodified SDKs make of Corridor's holds and refusals. A held call must be an error to
 * every SDK (never a result), and the SDKs that retry on their own (OpenAI, Stripe, Slack) must
 * wait on the approval transparently: their retries join the one approval, and when the approver
 * is quick the upstream's result arrives in the same call, executed once. A refusal's code and
 * reason must be in the error message each SDK raises.
 */
import { createHash } from 'node:crypto'
import { Octokit } from '@octokit/rest'
import { WebClient } from '@slack/web-api'
import OpenAI from 'openai'
import Stripe from 'stripe'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveWhenPending, heldEvents } from '../helpers/approvals-fixture.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

const AGENT_KEY = 'cor_sdk_holds_agent_key'
const APPROVER_KEY = 'cap_sdk_holds_approver_key'
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`

let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  // One stand-in answering in each API's shape, by path.
  upstream = await startRecordingUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    if (req.url.startsWith('/slack/')) return void res.end(JSON.stringify({ ok: true, ts: '1.2', channel: 'C1' }))
    if (req.url.startsWith('/stripe/'))
      return void res.end(JSON.stringify({ id: 're_9', object: 'refund', amount: 90000, status: 'succeeded' }))
    if (req.url.startsWith('/openai/'))
      return void res.end(
        JSON.stringify({
          id: 'c9',
          object: 'chat.completion',
          created: 1,
          model: 'gpt-4o',
          choices: [{ index: 0, message: { role: 'assistant', content: 'approved answer' }, finish_reason: 'stop' }],
        }),
      )
    res.end(JSON.stringify({ number: 7 }))
  })
  const connector = (id: string, extra = '') => `  - id: ${id}
    owner: qa
    upstream: ${upstream.url}/${id}
    certified_until: 2099-01-01
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
${extra}`
  fx = await startCorridorFixture(
    {
      agents: `agents:
  - { id: sdk-agent, owner: qa, tier: transactional, connectors: [openai, stripe, slack, github, s3], api_keys: [{ hash: "${sha(AGENT_KEY)}" }] }
approvers:
  - { id: lead, groups: [leads], keys: [{ hash: "${sha(APPROVER_KEY)}" }] }
`,
      connectors: `connectors:
${connector('openai', '    actions:\n      - { name: chat.create, method: POST, path: /chat/completions, risk: write }\n')}${connector(
        'stripe',
        '    hosts: [localhost]\n    actions:\n      - { name: refunds.create, method: POST, path: /v1/refunds, risk: transactional }\n',
      ).replace(`${upstream.url}/stripe`, `${upstream.url}/stripe`)}${connector(
        'slack',
        '    error_format: slack\n    agent_key_fields: [token]\n    actions:\n      - { name: chat.postMessage, method: POST, path: /chat.postMessage, risk: write }\n',
      )}${connector('github', '    actions:\n      - { name: issues.create, method: POST, path: "/repos/{owner}/{repo}/issues", risk: write }\n')}${connector(
        's3',
        '    error_format: aws_xml\n    actions:\n      - { name: objects.get, method: GET, path: "/{bucket}/{key+}", risk: read }\n',
      )}`,
      policy: `version: 1
rules:
  - { id: chat-mini, effect: allow, match: { connectors: openai, body: { model: gpt-4o-mini } } }
  - { id: chat-big, effect: require_approval, approvers: [leads], reason: big models need a lead, match: { connectors: openai, body: { model: gpt-4o } } }
  - { id: refunds-big, effect: require_approval, approvers: [leads], reason: large refunds need a lead, match: { connectors: stripe, body: { amount: { gt: 5000 } } } }
  - { id: slack-ops, effect: allow, match: { connectors: slack, body: { channel: C-ops } } }
  - { id: slack-announce, effect: require_approval, approvers: [leads], reason: announcements need a lead, match: { connectors: slack, body: { channel: C-all } } }
  - { id: gh-acme, effect: allow, match: { connectors: github, params: { owner: acme } } }
  - { id: gh-secure, effect: require_approval, approvers: [leads], reason: the secure org needs a lead, match: { connectors: github, params: { owner: acme-secure } } }
`,
      extraConfig: 'approvals: { wait: 1s }\n',
    },
    { TOKEN: 'sdk-holds-upstream-token' },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
})

const received = (prefix: string) => upstream.received.filter((r) => r.url.startsWith(prefix))

/** The agent's attempts on an approval: its held answers and the retry that got the result. */
function attempts(approvalId: string): string[] {
  return fx
    .auditRecords()
    .filter((r) => r.approval?.id === approvalId && r.approval.executed_request_id !== r.request_id)
    .map((r) => r.outcome)
}

describe('a held call', () => {
  it('is an error to the OpenAI SDK when nobody decides, naming the approval', async () => {
    const client = new OpenAI({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/openai`, maxRetries: 0 })
    const err = (await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'nobody decides' }] })
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect(err.status).toBe(503)
    expect(err.message).toMatch(/corridor approval_pending: held for approval apr_[\w-]+ \(pending/)
    expect(received('/openai/')).toHaveLength(0)
  })

  it('is an error to a streaming call too (raised before any chunk), naming the approval', async () => {
    const client = new OpenAI({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/openai`, maxRetries: 0 })
    const err = (await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'stream me' }], stream: true })
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect(err.message).toMatch(/corridor approval_pending: held for approval apr_/)
  })

  it('Octokit, which does not retry: a RequestError naming the approval, never a result', async () => {
    const octokit = new Octokit({ auth: AGENT_KEY, baseUrl: `${fx.corridor.agentUrl}/github`, request: { retries: 0 } })
    const err = (await octokit.rest.issues
      .create({ owner: 'acme-secure', repo: 'vault', title: 'rotate' })
      .catch((e: unknown) => e)) as { status: number; message: string }
    expect(err.status).toBe(503)
    expect(err.message).toMatch(/corridor approval_pending: held for approval apr_/)
    expect(received('/github/')).toHaveLength(0)
  })

  it('OpenAI: the SDK’s own retries join the one approval, and the result arrives in the same call', async () => {
    const client = new OpenAI({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/openai`, maxRetries: 3 })
    const before = heldEvents(fx.allOutput(), 'openai').length
    const call = client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'quick lead' }],
    })
    const id = await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'openai', 'quick lead')
    const completion = await call
    expect(completion.choices[0]?.message.content).toBe('approved answer')
    expect(attempts(id)).toEqual(expect.arrayContaining(['held', 'released']))
    expect(received('/openai/').filter((r) => r.body.toString().includes('quick lead'))).toHaveLength(1)
    expect(heldEvents(fx.allOutput(), 'openai').length - before).toBe(1)
    expect(heldEvents(fx.allOutput(), 'openai')).toHaveLength(3) // this one, and the two nobody decided
  })

  it('Stripe: the same, through stripe-node’s network retries', async () => {
    const client = new Stripe(AGENT_KEY, {
      host: 'localhost',
      port: Number(new URL(fx.corridor.agentUrl).port),
      protocol: 'http',
      maxNetworkRetries: 3,
    })
    const call = client.refunds.create({ charge: 'ch_9', amount: 90000 })
    const id = await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'stripe', '90000')
    const refund = await call
    expect(refund.amount).toBe(90000)
    expect(attempts(id)).toEqual(expect.arrayContaining(['held', 'released']))
    expect(received('/stripe/')).toHaveLength(1)
    expect(heldEvents(fx.allOutput(), 'stripe')).toHaveLength(1)
  })

  it('Slack: the same, through the WebClient’s retry policy', async () => {
    const slack = new WebClient(AGENT_KEY, {
      slackApiUrl: `${fx.corridor.agentUrl}/slack/`,
      retryConfig: { retries: 5, factor: 1, minTimeout: 100, maxTimeout: 300 },
    })
    const call = slack.chat.postMessage({ channel: 'C-all', text: 'all hands at 3' })
    const id = await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'slack', 'all%20hands')
    const sent = await call
    expect(sent.ok).toBe(true)
    expect(attempts(id)).toEqual(expect.arrayContaining(['held', 'released']))
    const posted = received('/slack/').filter(
      (r) => new URLSearchParams(r.body.toString()).get('text') === 'all hands at 3',
    )
    expect(posted).toHaveLength(1)
    expect(heldEvents(fx.allOutput(), 'slack')).toHaveLength(1)
    for (const r of received('/slack/'))
      expect(JSON.stringify(r.rawHeaders) + r.body.toString()).not.toContain(AGENT_KEY)
  })
})

describe('a refusal', () => {
  it('OpenAI: the error message carries Corridor’s code and reason', async () => {
    const client = new OpenAI({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/openai`, maxRetries: 0 })
    const err = (await client.chat.completions
      .create({ model: 'o1-pro', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/^403 corridor policy_denied: .*no rule allows/)
  })

  it('Slack: an API error whose message carries Corridor’s code and reason (Slack reads only {ok: false})', async () => {
    const slack = new WebClient(AGENT_KEY, {
      slackApiUrl: `${fx.corridor.agentUrl}/slack/`,
      retryConfig: { retries: 0 },
    })
    const err = (await slack.chat.postMessage({ channel: 'C-random', text: 'hi' }).catch((e: unknown) => e)) as {
      code: string
      message: string
    }
    expect(err.code).toBe('slack_webapi_platform_error')
    expect(err.message).toMatch(/^An API error occurred: corridor policy_denied: .*no rule allows/)
  })

  it('Octokit: the RequestError message carries Corridor’s code and reason', async () => {
    const octokit = new Octokit({ auth: AGENT_KEY, baseUrl: `${fx.corridor.agentUrl}/github`, request: { retries: 0 } })
    const err = (await octokit.rest.issues
      .create({ owner: 'someone-else', repo: 'app', title: 'x' })
      .catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/corridor policy_denied: .*no rule allows/)
  })

  it('AWS: a SigV4-signed request is refused in the XML AWS SDKs parse, saying why', async () => {
    const res = await request(`${fx.corridor.agentUrl}/s3/bucket/report.csv`, {
      headers: {
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261130/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc',
        'x-amz-date': '20261130T000000Z',
      },
    })
    expect(res.statusCode).toBe(401)
    expect(res.headers['content-type']).toBe('application/xml')
    const xml = await res.body.text()
    expect(xml).toMatch(
      /<Error><Code>InvalidAccessKeyId<\/Code><Message>corridor identity_invalid: AWS Signature Version 4 requests are not brokered/,
    )
    expect(received('/s3/')).toHaveLength(0)
  })

  it('Stripe: the StripeError message carries Corridor’s code and reason', async () => {
    const client = new Stripe(AGENT_KEY, {
      host: 'localhost',
      port: Number(new URL(fx.corridor.agentUrl).port),
      protocol: 'http',
      maxNetworkRetries: 0,
    })
    const err = (await client.refunds
      .create({ charge: 'ch_1', amount: 10, reason: 'duplicate' })
      .catch((e: unknown) => e)) as Error
    // Small refunds have no rule here: the default deny.
    expect(err.message).toMatch(/^corridor policy_denied: .*no rule allows/)
  })
})
