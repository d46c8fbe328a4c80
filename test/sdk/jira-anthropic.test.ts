/**
 * Two more unmodified SDKs that agents use, each against a stand-in in its API's shape: jira.js
 * (which once resolved a held createIssue with `key` undefined) and the Anthropic SDK (whose
 * streaming call under a hold failed opaquely). Allowed calls return parsed results, streaming
 * arrives as produced, a denial's message says Corridor's code and reason, and a hold is an error
 * that the SDK's own retries turn into the result once approved: one approval, one execution.
 */
import { createHash } from 'node:crypto'
import Anthropic from '@anthropic-ai/sdk'
import { createCloudClient, ForbiddenError } from 'jira.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveWhenPending, heldEvents } from '../helpers/approvals-fixture.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

const AGENT_KEY = 'cor_sdk_more_agent_key'
const APPROVER_KEY = 'cap_sdk_more_approver_key'
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`
const UPSTREAM_TOKEN = 'upstream-token-jira-anthropic'

let jira: RecordingUpstream
let anthropic: RecordingUpstream
let fx: CorridorFixture

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

beforeAll(async () => {
  jira = await startRecordingUpstream((req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' })
    const summary = (JSON.parse(req.body.toString()) as { fields: { summary: string } }).fields.summary
    res.end(
      JSON.stringify({
        id: '10001',
        key: `OPS-${summary.length}`,
        self: 'https://jira.example/rest/api/3/issue/10001',
      }),
    )
  })
  anthropic = await startRecordingUpstream((req, res) => {
    const body = JSON.parse(req.body.toString()) as { stream?: boolean }
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' })
      return void res.end(
        JSON.stringify({
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: 'claude-test',
          content: [{ type: 'text', text: 'approved reply' }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 2 },
        }),
      )
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const events = [
      sse('message_start', {
        type: 'message_start',
        message: {
          id: 'msg_2',
          type: 'message',
          role: 'assistant',
          model: 'claude-test',
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 0 },
        },
      }),
      sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      ...['Streamed', ' through', ' Corridor'].map((text) =>
        sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }),
      ),
      sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
      sse('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 3 },
      }),
      sse('message_stop', { type: 'message_stop' }),
    ]
    let i = 0
    const tick = setInterval(() => {
      if (i < events.length) res.write(events[i++])
      else {
        clearInterval(tick)
        res.end()
      }
    }, 40)
  })
  fx = await startCorridorFixture(
    {
      agents: `agents:
  - { id: sdk-agent, owner: qa, tier: transactional, connectors: [jira, anthropic], api_keys: [{ hash: "${sha(AGENT_KEY)}" }] }
approvers:
  - { id: lead, groups: [leads], keys: [{ hash: "${sha(APPROVER_KEY)}" }] }
`,
      connectors: `connectors:
  - id: jira
    owner: qa
    upstream: ${jira.url}
    certified_until: 2099-01-01
    credential: { source: env, env: TOKEN, inject: { basic: { username: bot@example.com, password: "{secret}" } } }
    actions:
      - { name: issue.create, method: POST, path: /rest/api/3/issue, risk: write }
  - id: anthropic
    owner: qa
    upstream: ${anthropic.url}
    certified_until: 2099-01-01
    agent_key_header: x-api-key
    credential: { source: env, env: TOKEN, inject: { header: x-api-key } }
    actions:
      - { name: messages.create, method: POST, path: /v1/messages, risk: write }
`,
      policy: `version: 1
rules:
  - { id: ops-issues, effect: allow, match: { connectors: jira, body: { fields.project.key: OPS } } }
  - { id: sec-issues, effect: require_approval, approvers: [leads], reason: security tickets need a lead, match: { connectors: jira, body: { fields.project.key: SEC } } }
  - { id: haiku, effect: allow, match: { connectors: anthropic, body: { model: claude-haiku } } }
  - { id: opus, effect: require_approval, approvers: [leads], reason: the big model needs a lead, match: { connectors: anthropic, body: { model: claude-opus } } }
`,
      extraConfig: 'approvals: { wait: 1s }\n',
    },
    { TOKEN: UPSTREAM_TOKEN },
  )
})

afterAll(async () => {
  await fx.close()
  await Promise.all([jira.close(), anthropic.close()])
  for (const upstream of [jira, anthropic])
    for (const r of upstream.received) expect(JSON.stringify(r.rawHeaders) + r.body.toString()).not.toContain(AGENT_KEY)
})

const jiraClient = (retries: number) =>
  createCloudClient({
    host: `${fx.corridor.agentUrl}/jira`,
    auth: { type: 'basic', email: 'agent@example.com', apiToken: AGENT_KEY },
    ...(retries > 0 ? { retry: { maxAttempts: retries + 1, initialDelayMs: 1_000, backoffFactor: 1 } } : {}),
  })

describe('jira.js', () => {
  it('creates an issue, and raises a denial whose message says why', async () => {
    const created = await jiraClient(0).issues.createIssue({
      fields: { project: { key: 'OPS' }, summary: 'disk full', issuetype: { name: 'Task' } },
    })
    expect(created.key).toBe('OPS-9')
    expect(jira.received[0]?.headers.authorization).toBe(
      'Basic ' + Buffer.from(`bot@example.com:${UPSTREAM_TOKEN}`).toString('base64'),
    )
    const err = (await jiraClient(0)
      .issues.createIssue({ fields: { project: { key: 'HR' }, summary: 'x', issuetype: { name: 'Task' } } })
      .catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(ForbiddenError)
    expect(err.message).toMatch(/corridor policy_denied: .*no rule allows/)
  })

  it('a held createIssue is an error, never an issue with no key; its retries bring the issue once approved', async () => {
    const refused = (await jiraClient(0)
      .issues.createIssue({
        fields: { project: { key: 'SEC' }, summary: 'nobody decides', issuetype: { name: 'Task' } },
      })
      .catch((e: unknown) => e)) as Error
    expect(refused.message).toMatch(/corridor approval_pending: held for approval apr_/)

    const before = jira.received.length
    const call = jiraClient(4).issues.createIssue({
      fields: { project: { key: 'SEC' }, summary: 'rotate the key', issuetype: { name: 'Task' } },
    })
    await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'jira', 'rotate the key')
    const created = await call
    expect(created.key).toBe('OPS-14')
    expect(jira.received.length - before).toBe(1)
    expect(heldEvents(fx.allOutput(), 'jira')).toHaveLength(2) // the one nobody decided, and this one
  })
})

describe('@anthropic-ai/sdk', () => {
  const client = (maxRetries: number) =>
    new Anthropic({ apiKey: AGENT_KEY, baseURL: `${fx.corridor.agentUrl}/anthropic`, maxRetries })

  it('streams a message as the upstream produces it', async () => {
    const arrivals: number[] = []
    let text = ''
    const stream = client(0).messages.stream({
      model: 'claude-haiku',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    })
    stream.on('text', (delta) => {
      arrivals.push(Date.now())
      text += delta
    })
    await stream.finalMessage()
    expect(text).toBe('Streamed through Corridor')
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThanOrEqual(60)
    expect(anthropic.received[0]?.headers['x-api-key']).toBe(UPSTREAM_TOKEN)
  })

  it('raises a denial whose message says why', async () => {
    const err = (await client(0)
      .messages.create({ model: 'claude-unknown', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(Anthropic.APIError)
    expect(err.message).toMatch(/corridor policy_denied: .*no rule allows/)
  })

  it('a held streaming call fails with the approval named, before any chunk', async () => {
    const stream = client(0).messages.stream({
      model: 'claude-opus',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'stream, nobody decides' }],
    })
    const err = (await stream.finalMessage().catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(Anthropic.APIError)
    expect(err.message).toMatch(/corridor approval_pending: held for approval apr_/)
  })

  it('a held call resolves with the reply in the same call once approved, through the SDK’s retries', async () => {
    const before = anthropic.received.length
    const call = client(3).messages.create({
      model: 'claude-opus',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'deploy plan' }],
    })
    await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'anthropic', 'deploy plan')
    const message = await call
    expect(message.content[0]).toEqual({ type: 'text', text: 'approved reply' })
    expect(anthropic.received.length - before).toBe(1)
    expect(heldEvents(fx.allOutput(), 'anthropic')).toHaveLength(2)
  })
})
