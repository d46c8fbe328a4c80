/**
 * Two more SDKs agents use, against stand-ins in their APIs' shapes: HubSpot's (which retries 5xx
 * on its own) and Notion's (which shows an error message only under a code of Notion's, and
 * retries writes only when rate limited: its connector answers holds with 429 in Notion's dialect).
 */
import { createHash } from 'node:crypto'
import { Client as HubSpot } from '@hubspot/api-client'
import { APIResponseError, Client as Notion } from '@notionhq/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { approveWhenPending, heldEvents } from '../helpers/approvals-fixture.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

const AGENT_KEY = 'cor_sdk_crm_agent_key'
const APPROVER_KEY = 'cap_sdk_crm_approver_key'
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`
const UPSTREAM_TOKEN = 'upstream-token-hubspot-notion'

let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream((req, res) => {
    res.writeHead(req.url.startsWith('/hubspot/') ? 201 : 200, { 'content-type': 'application/json' })
    if (req.url.startsWith('/hubspot/')) {
      const { properties } = JSON.parse(req.body.toString()) as { properties: Record<string, string> }
      return void res.end(
        JSON.stringify({
          id: '501',
          properties,
          createdAt: '2026-11-30T00:00:00Z',
          updatedAt: '2026-11-30T00:00:00Z',
          archived: false,
        }),
      )
    }
    res.end(JSON.stringify({ object: 'page', id: 'page-1', properties: {}, url: 'https://notion.example/page-1' }))
  })
  fx = await startCorridorFixture(
    {
      agents: `agents:
  - { id: crm-agent, owner: qa, tier: transactional, connectors: [hubspot, notion], api_keys: [{ hash: "${sha(AGENT_KEY)}" }] }
approvers:
  - { id: lead, groups: [leads], keys: [{ hash: "${sha(APPROVER_KEY)}" }] }
`,
      connectors: `connectors:
  - id: hubspot
    owner: qa
    upstream: ${upstream.url}/hubspot
    certified_until: 2099-01-01
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: contacts.create, method: POST, path: /crm/v3/objects/contacts, risk: write }
  - id: notion
    owner: qa
    upstream: ${upstream.url}/notion
    certified_until: 2099-01-01
    error_format: notion
    hold_status: 429
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: pages.create, method: POST, path: /v1/pages, risk: write }
`,
      policy: `version: 1
rules:
  - { id: contacts-internal, effect: allow, match: { connectors: hubspot, body: { properties.email: { in: [a@acme.test] } } } }
  - { id: contacts-vip, effect: require_approval, approvers: [leads], reason: VIP contacts need a lead, match: { connectors: hubspot, body: { properties.email: vip@acme.test } } }
  - { id: pages-team, effect: allow, match: { connectors: notion, body: { parent.database_id: team-db } } }
  - { id: pages-board, effect: require_approval, approvers: [leads], reason: board pages need a lead, match: { connectors: notion, body: { parent.database_id: board-db } } }
`,
      extraConfig: 'approvals: { wait: 1s }\n',
    },
    { TOKEN: UPSTREAM_TOKEN },
  )
})

afterAll(async () => {
  await fx.close()
  await upstream.close()
  for (const r of upstream.received) expect(JSON.stringify(r.rawHeaders) + r.body.toString()).not.toContain(AGENT_KEY)
})

const received = (prefix: string, marker: string) =>
  upstream.received.filter((r) => r.url.startsWith(prefix) && r.body.toString().includes(marker))

describe('@hubspot/api-client', () => {
  const hubspot = (retries: number) =>
    new HubSpot({
      accessToken: AGENT_KEY,
      basePath: `${fx.corridor.agentUrl}/hubspot`,
      numberOfApiCallRetries: retries,
    })

  it('creates a contact, and raises a denial whose message says why', async () => {
    const created = await hubspot(0).crm.contacts.basicApi.create({
      properties: { email: 'a@acme.test' },
      associations: [],
    })
    expect(created.id).toBe('501')
    expect(upstream.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_TOKEN}`)
    const err = (await hubspot(0)
      .crm.contacts.basicApi.create({ properties: { email: 'x@elsewhere.test' }, associations: [] })
      .catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/corridor policy_denied: .*no rule allows/)
  })

  it('a held create resolves once approved, through the client’s own 5xx retries: one approval, one execution', async () => {
    const call = hubspot(6).crm.contacts.basicApi.create({ properties: { email: 'vip@acme.test' }, associations: [] })
    await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'hubspot', 'vip@acme.test')
    expect((await call).id).toBe('501')
    expect(received('/hubspot/', 'vip@acme.test')).toHaveLength(1)
    expect(heldEvents(fx.allOutput(), 'hubspot')).toHaveLength(1)
  })
})

describe('@notionhq/client', () => {
  const notion = (maxRetries: number) =>
    new Notion({
      auth: AGENT_KEY,
      baseUrl: `${fx.corridor.agentUrl}/notion`,
      retry: { maxRetries, initialRetryDelayMs: 200, maxRetryDelayMs: 1_000 },
    })
  const page = (databaseId: string, title: string) => ({
    parent: { database_id: databaseId },
    properties: { title: { title: [{ text: { content: title } }] } },
  })

  it('creates a page, and raises a denial whose message says why (in Notion’s dialect)', async () => {
    const created = await notion(0).pages.create(page('team-db', 'standup'))
    expect(created.id).toBe('page-1')
    const err = (await notion(0)
      .pages.create(page('secret-db', 'x'))
      .catch((e: unknown) => e)) as APIResponseError
    expect(err).toBeInstanceOf(APIResponseError)
    expect(err.code).toBe('restricted_resource')
    expect(err.message).toMatch(/^corridor policy_denied: .*no rule allows/)
  })

  it('a held write (429, rate_limited to Notion) resolves once approved, through the SDK’s retries', async () => {
    const call = notion(6).pages.create(page('board-db', 'quarterly numbers'))
    await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'notion', 'quarterly numbers')
    expect((await call).id).toBe('page-1')
    expect(received('/notion/', 'quarterly numbers')).toHaveLength(1)
    expect(heldEvents(fx.allOutput(), 'notion')).toHaveLength(1)
  })
})
