/**
 * Requests inside requests: every sub-request of a batch and every root field of a GraphQL
 * document is decided as its own action. Generated batches put a forbidden sub-request at every
 * position, and generated GraphQL documents hide a forbidden mutation under every disguise
 * (aliases, fragments, inline fragments, several operations, operation names that look like
 * queries, @skip, variables); none may reach the upstream.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'
import { prng } from '../differential/generate.ts'

let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - id: writer\n    owner: team-a\n    tier: transactional\n    connectors: [graph, sf, gh]\n    api_keys: [{ hash: "${hash(AGENT_KEY)}" }]\n`,
      connectors: `connectors:
  - id: graph
    owner: team-a
    upstream: ${upstream.url}/v1.0
    certified_until: 2099-12-31
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: batch, method: POST, path: "/$batch", risk: write, batch: { format: graph } }
      - { name: messages.list, method: GET, path: /me/messages, risk: read }
      - { name: messages.get, method: GET, path: "/me/messages/{id}", risk: read }
      - { name: messages.delete, method: DELETE, path: "/me/messages/{id}", risk: write }
      - { name: mail.send, method: POST, path: /me/sendMail, risk: write }
  - id: sf
    owner: team-a
    upstream: ${upstream.url}/services/data/v60.0
    certified_until: 2099-12-31
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: composite, method: POST, path: /composite, risk: write, batch: { format: salesforce_composite, url_prefix: /services/data/v60.0 } }
      - { name: account.create, method: POST, path: /sobjects/Account, risk: write }
      - { name: account.delete, method: DELETE, path: "/sobjects/Account/{id}", risk: write }
  - id: gh
    owner: team-a
    upstream: ${upstream.url}/api
    certified_until: 2099-12-31
    credential: { source: env, env: TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    actions:
      - { name: graphql, method: POST, path: /graphql, risk: read, graphql: true }
      - { name: viewer, graphql_field: query.viewer, risk: read }
      - { name: repository, graphql_field: query.repository, risk: read }
      - { name: comment.add, graphql_field: mutation.addComment, risk: write }
      - { name: issue.delete, graphql_field: mutation.deleteIssue, risk: write }
`,
      policy: `version: 1
rules:
  - { id: batch, effect: allow, match: { actions: [batch, composite, graphql] } }
  - { id: read, effect: allow, match: { actions: [messages.list, messages.get, viewer, repository] } }
  - { id: no-deletes, effect: deny, reason: agents do not delete, match: { actions: [messages.delete, account.delete, issue.delete] } }
  - { id: mail-approval, effect: require_approval, approvers: [leads], match: { actions: [mail.send] } }
  - { id: accounts, effect: allow, match: { actions: [account.create] } }
  - { id: comments, effect: allow, match: { actions: [comment.add] } }
  - { id: no-comments-on-secret, effect: deny, match: { actions: [comment.add], body: { input.subjectId: secret-issue } } }
`,
      extraConfig: 'approvals: { wait: 0s }\n',
    },
    { TOKEN: 'upstream-token-abcdefghijkl' },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

beforeEach(() => {
  upstream.received.length = 0
})

async function post(
  path: string,
  body: unknown,
): Promise<{ status: number; code: string | undefined; reason: string }> {
  const res = await request(fx.corridor.agentUrl + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${AGENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.body.text()
  const code = res.headers['x-corridor-error']
  return { status: res.statusCode, code: Array.isArray(code) ? code[0] : code, reason: text }
}

describe('batches: every sub-request is decided', () => {
  const allowed = [
    { method: 'GET', url: '/me/messages?$top=5' },
    { method: 'GET', url: 'me/messages/m1' },
    { method: 'get', url: '/me/messages/m2' },
  ]
  const forbidden = [
    { method: 'DELETE', url: '/me/messages/m1' },
    { method: 'delete', url: '/me/messages/m9' },
    { method: 'DELETE', url: '/me/messages/./m1' },
    { method: 'POST', url: '/me/unknownAction' },
    { method: 'GET', url: 'https://evil.example/me/messages' },
    { method: 'GET', url: '//evil.example/me/messages' },
    { method: 'POST', url: '/$batch', body: { requests: [] } },
    { method: 'GET', url: '/me/messages', extra: 'x' },
  ]

  it('an allowed batch is forwarded once, as sent', async () => {
    const res = await post('/graph/$batch', { requests: allowed.map((r, i) => ({ id: String(i), ...r })) })
    expect(res.status).toBe(200)
    expect(upstream.received).toHaveLength(1)
  })

  it('a forbidden sub-request at every position of generated batches is never forwarded', async () => {
    const random = prng(20261130)
    let cases = 0
    for (const bad of forbidden) {
      for (let size = 1; size <= 4; size++) {
        for (let position = 0; position < size; position++) {
          const requests = Array.from({ length: size }, (_, i) =>
            i === position ? bad : (allowed[Math.floor(random() * allowed.length)] as object),
          )
          const res = await post('/graph/$batch', { requests: requests.map((r, i) => ({ id: String(i), ...r })) })
          expect([res.status, JSON.stringify(requests)]).not.toEqual([200, JSON.stringify(requests)])
          cases++
        }
      }
    }
    expect(cases).toBe(forbidden.length * 10)
    expect(upstream.received).toHaveLength(0)
  })

  it('a sub-request that needs approval holds the whole batch', async () => {
    const res = await post('/graph/$batch', {
      requests: [allowed[0], { id: '9', method: 'POST', url: '/me/sendMail', body: { message: {} } }],
    })
    expect(res.status).toBe(503)
    expect(res.code).toBe('approval_pending')
    expect(upstream.received).toHaveLength(0)
  })

  it('Salesforce Composite: sub-request URLs must carry the API prefix, and each is decided', async () => {
    expect(
      (
        await post('/sf/composite', {
          compositeRequest: [
            { method: 'POST', url: '/services/data/v60.0/sobjects/Account', referenceId: 'a', body: { Name: 'x' } },
          ],
        })
      ).status,
    ).toBe(200)
    expect(
      (
        await post('/sf/composite', {
          compositeRequest: [
            { method: 'POST', url: '/services/data/v60.0/sobjects/Account', referenceId: 'a' },
            { method: 'DELETE', url: '/services/data/v60.0/sobjects/Account/001', referenceId: 'b' },
          ],
        })
      ).status,
    ).toBe(403)
    expect(
      (
        await post('/sf/composite', {
          compositeRequest: [{ method: 'DELETE', url: '/services/data/v59.0/sobjects/Account/001', referenceId: 'b' }],
        })
      ).status,
    ).toBe(400)
    expect(upstream.received).toHaveLength(1)
  })
})

describe('GraphQL: decided on the parsed document, never on operationName', () => {
  const forbidden = 'deleteIssue(input: {issueId: "I_1"}) { clientMutationId }'
  const disguises: [string, (f: string) => { query: string; operationName?: string; variables?: unknown }][] = [
    ['plain', (f) => ({ query: `mutation { ${f} }` })],
    ['named like a query', (f) => ({ query: `mutation Viewer { ${f} }`, operationName: 'Viewer' })],
    ['alias', (f) => ({ query: `mutation { viewer: ${f} }` })],
    ['fragment', (f) => ({ query: `mutation { ...F } fragment F on Mutation { ${f} }` })],
    [
      'nested fragments',
      (f) => ({ query: `mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { ${f} }` }),
    ],
    ['inline fragment', (f) => ({ query: `mutation { ... on Mutation { ${f} } }` })],
    ['second operation', (f) => ({ query: `query A { viewer { login } } mutation B { ${f} }`, operationName: 'A' })],
    ['@skip', (f) => ({ query: `mutation { ${f.replace(') {', ') @skip(if: true) {')} }` })],
    [
      'after an allowed field',
      (f) => ({ query: `mutation { addComment(input: {subjectId: "I_2", body: "hi"}) { clientMutationId } ${f} }` }),
    ],
    [
      'variables',
      () => ({
        query: 'mutation($id: ID!) { deleteIssue(input: {issueId: $id}) { clientMutationId } }',
        variables: { id: 'I_1' },
      }),
    ],
  ]

  it('allowed queries and mutations go through', async () => {
    expect(
      (
        await post('/gh/graphql', {
          query: 'query Viewer { viewer { login } repository(owner: "a", name: "b") { id } }',
          operationName: 'Viewer',
        })
      ).status,
    ).toBe(200)
    expect(
      (
        await post('/gh/graphql', {
          query: 'mutation { addComment(input: {subjectId: "I_2", body: "hi"}) { clientMutationId } }',
        })
      ).status,
    ).toBe(200)
    expect(upstream.received).toHaveLength(2)
  })

  it.each(disguises)('a forbidden mutation hidden by %s is refused', async (_name, wrap) => {
    const res = await post('/gh/graphql', wrap(forbidden))
    expect(res.status).toBe(403)
    expect(res.reason).toContain('deleteIssue')
    expect(upstream.received).toHaveLength(0)
  })

  it('generated documents: disguises combined with allowed fields never carry the mutation through', async () => {
    const random = prng(7)
    const benign = ['viewer { login }', 'repository(owner: "a", name: "b") { id }', '__typename']
    for (let i = 0; i < 60; i++) {
      const [, wrap] = disguises[Math.floor(random() * disguises.length)] as (typeof disguises)[number]
      const body = wrap(forbidden)
      const extra = benign[Math.floor(random() * benign.length)] as string
      const query = random() < 0.5 ? `query Q${i} { ${extra} } ${body.query}` : body.query
      const res = await post('/gh/graphql', { ...body, query })
      expect([res.status, query]).toEqual([403, query])
    }
    expect(upstream.received).toHaveLength(0)
  })

  it('arguments are the fields rules read, with variables substituted', async () => {
    expect(
      (
        await post('/gh/graphql', {
          query: 'mutation($id: ID!) { addComment(input: {subjectId: $id, body: "x"}) { clientMutationId } }',
          variables: { id: 'secret-issue' },
        })
      ).status,
    ).toBe(403)
    expect(
      (
        await post('/gh/graphql', {
          query: 'mutation { addComment(input: {subjectId: "secret-issue", body: "x"}) { clientMutationId } }',
        })
      ).status,
    ).toBe(403)
    expect(upstream.received).toHaveLength(0)
  })

  it('refuses what cannot be decided: unknown root fields, batched GraphQL, persisted queries, unparsable text', async () => {
    expect((await post('/gh/graphql', { query: 'mutation { transferRepository { id } }' })).status).toBe(403)
    expect((await post('/gh/graphql', [{ query: 'query { viewer { login } }' }])).status).toBe(400)
    expect(
      (await post('/gh/graphql', { extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } })).status,
    ).toBe(400)
    expect((await post('/gh/graphql', { query: 'mutation { deleteIssue(' })).status).toBe(400)
    expect(upstream.received).toHaveLength(0)
  })
})
