/**
 * Follow-up URLs lead back through Corridor. Slack's filesUploadV2 posts the file to the absolute
 * `upload_url` the API returned, with the agent's key; a paged listing follows the absolute
 * `@odata.nextLink` and `Link: rel="next"` the upstream returned. Corridor rewrites every URL
 * that points at a connector's upstream to its own, so each follow-up call is decided, given the
 * connector's credential and audited, and the agent key never leaves; a follow-up URL pointing
 * nowhere Corridor knows is reported.
 */
import { WebClient } from '@slack/web-api'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { approveWhenPending } from '../helpers/approvals-fixture.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'

const APPROVER_KEY = 'cap_follow_ups_approver_key'

let slackApi: RecordingUpstream
let slackFiles: RecordingUpstream
let graph: RecordingUpstream
let fx: CorridorFixture
let uploadOrigin = ''

beforeAll(async () => {
  slackFiles = await startRecordingUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('OK - 11')
  })
  slackApi = await startRecordingUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    if (req.url.endsWith('/files.getUploadURLExternal'))
      return void res.end(JSON.stringify({ ok: true, upload_url: `${uploadOrigin}/upload/v1/ABC123`, file_id: 'F123' }))
    if (req.url.endsWith('/files.completeUploadExternal'))
      return void res.end(JSON.stringify({ ok: true, files: [{ id: 'F123', title: 'report.txt' }] }))
    res.end(JSON.stringify({ ok: true }))
  })
  uploadOrigin = slackFiles.url
  graph = await startRecordingUpstream((req, res) => {
    if (req.method === 'POST') {
      res.writeHead(201, { 'content-type': 'application/json', location: `${graph.url}/v1.0/users/u9` })
      return void res.end(JSON.stringify({ id: 'u9', self: `${graph.url}/v1.0/users/u9` }))
    }
    const skip = Number(new URL(req.url, 'http://x').searchParams.get('$skip') ?? 0)
    const next = skip < 4 ? `${graph.url}/v1.0/users?$skip=${skip + 2}` : undefined
    res.writeHead(200, {
      'content-type': 'application/json',
      ...(next === undefined ? {} : { link: `<${next}>; rel="next"` }),
    })
    res.end(
      JSON.stringify({
        value: [{ id: `u${skip}` }, { id: `u${skip + 1}` }],
        ...(next === undefined ? {} : { '@odata.nextLink': next }),
        // A URL the agent might follow that Corridor does not govern: reported, not rewritten.
        ...(skip === 0 ? { deltaLink: 'https://elsewhere.example/delta?token=secret-signed-token' } : {}),
      }),
    )
  })
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - { id: bot, owner: qa, tier: bounded-write, connectors: [slack, slack-files, graph], api_keys: [{ hash: "${hash(AGENT_KEY)}" }] }\napprovers:\n  - { id: lead, groups: [leads], keys: [{ hash: "${hash(APPROVER_KEY)}" }] }\n`,
      connectors: `connectors:
  - id: slack
    owner: qa
    upstream: ${slackApi.url}/api
    certified_until: 2099-01-01
    error_format: slack
    agent_key_fields: [token]
    credential: { source: env, env: SLACK, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: files.getUploadURLExternal, method: POST, path: /files.getUploadURLExternal, risk: write }
      - { name: files.completeUploadExternal, method: POST, path: /files.completeUploadExternal, risk: write }
  - id: slack-files
    owner: qa
    upstream: ${slackFiles.url}
    certified_until: 2099-01-01
    credential: { source: env, env: SLACK, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: upload, method: POST, path: "/upload/v1/{id}", risk: write }
  - id: graph
    owner: qa
    upstream: ${graph.url}/v1.0
    certified_until: 2099-01-01
    credential: { source: env, env: GRAPH, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: users.list, method: GET, path: /users, risk: read }
      - { name: users.create, method: POST, path: /users, risk: write }
`,
      policy: `version: 1
rules:
  - { id: slack-files, effect: allow, match: { connectors: [slack, slack-files] } }
  - { id: graph-read, effect: allow, match: { connectors: graph, actions: users.list } }
  - { id: graph-create, effect: require_approval, approvers: [leads], match: { connectors: graph, actions: users.create } }
`,
      extraConfig: 'approvals: { wait: 0s }\n',
    },
    { SLACK: 'xoxb-upstream-token', GRAPH: 'graph-upstream-token' },
  )
})

afterAll(async () => {
  await fx.close()
  await Promise.all([slackApi.close(), slackFiles.close(), graph.close()])
})

const neverSawAgentKey = (upstream: RecordingUpstream) => {
  for (const r of upstream.received) expect(JSON.stringify(r.rawHeaders) + r.body.toString()).not.toContain(AGENT_KEY)
}

describe('follow-up URLs', () => {
  it('Slack filesUploadV2: the upload goes through Corridor to the files connector, with its credential', async () => {
    const slack = new WebClient(AGENT_KEY, { slackApiUrl: `${fx.corridor.agentUrl}/slack/api/`.replace('/api/', '/') })
    const result = await slack.filesUploadV2({ channel_id: 'C1', filename: 'report.txt', content: 'hello world' })
    expect(result.ok).toBe(true)
    expect(slackFiles.received).toHaveLength(1)
    expect(slackFiles.received[0]?.url).toBe('/upload/v1/ABC123')
    expect(slackFiles.received[0]?.headers.authorization).toBe('Bearer xoxb-upstream-token')
    expect(slackFiles.received[0]?.body.toString()).toContain('hello world')
    neverSawAgentKey(slackFiles)
    neverSawAgentKey(slackApi)
    await eventually(() =>
      expect(fx.auditRecords().map((r) => r.action)).toEqual(
        expect.arrayContaining(['files.getUploadURLExternal', 'upload', 'files.completeUploadExternal']),
      ),
    )
  })

  it('a paged listing follows @odata.nextLink and Link through Corridor, every page governed', async () => {
    const seen: string[] = []
    const followed: string[] = []
    let url: string | undefined = `${fx.corridor.agentUrl}/graph/users`
    while (url !== undefined) {
      followed.push(url)
      const res = await request(url, { headers: { authorization: `Bearer ${AGENT_KEY}` } })
      expect(res.statusCode).toBe(200)
      const link = res.headers.link as string | undefined
      const page = (await res.body.json()) as { value: { id: string }[]; '@odata.nextLink'?: string }
      seen.push(...page.value.map((u) => u.id))
      if (link !== undefined) expect(link).toBe(`<${page['@odata.nextLink'] ?? ''}>; rel="next"`)
      url = page['@odata.nextLink']
    }
    expect(seen).toEqual(['u0', 'u1', 'u2', 'u3', 'u4', 'u5'])
    for (const u of followed) expect(u.startsWith(fx.corridor.agentUrl + '/graph/')).toBe(true)
    expect(graph.received.map((r) => r.url)).toEqual(['/v1.0/users', '/v1.0/users?%24skip=2', '/v1.0/users?%24skip=4'])
    for (const r of graph.received) expect(r.headers.authorization).toBe('Bearer graph-upstream-token')
    neverSawAgentKey(graph)
    // The URL Corridor does not govern is reported by its origin only (it carries a signed token).
    const logs = fx.logs.join('')
    expect(logs).toContain('follow-up URL outside Corridor')
    expect(logs).toContain('https://elsewhere.example')
    expect(logs).not.toContain('secret-signed-token')
  })

  it('a released approval’s stored result leads back through Corridor too, at the address of the agent collecting it', async () => {
    const body = JSON.stringify({ displayName: 'new-user' })
    const headers = { authorization: `Bearer ${AGENT_KEY}`, 'content-type': 'application/json' }
    const held = await request(`${fx.corridor.agentUrl}/graph/users`, { method: 'POST', headers, body })
    const { approval_id: id } = (await held.body.json()) as { approval_id: string }
    expect(held.statusCode).toBe(503)
    await approveWhenPending(fx.corridor.adminUrl, APPROVER_KEY, 'graph', 'new-user', 0)
    await eventually(async () => {
      const got = await request(`${fx.corridor.agentUrl}/graph/users`, {
        method: 'POST',
        headers: { ...headers, 'x-corridor-approval': id },
        body,
      })
      expect(got.statusCode).toBe(201)
      expect(got.headers.location).toBe(`${fx.corridor.agentUrl}/graph/users/u9`)
      expect(await got.body.json()).toEqual({ id: 'u9', self: `${fx.corridor.agentUrl}/graph/users/u9` })
    }, 5_000)
  })
})
