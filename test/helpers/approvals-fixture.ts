/** Files and clients for approval-queue tests: agents, approvers with keys, and rules that hold requests. */
import { request } from 'undici'
import { hash } from './standard-policy.ts'

export const WRITER_KEY = 'cor_test_writer_key_0001'
export const ADMIN_BOT_KEY = 'cor_test_admin_bot_key_0002'
export const APPROVER_KEYS = {
  alice: 'cap_test_alice_key_0001', // leads
  bob: 'cap_test_bob_key_0002', // leads
  carol: 'cap_test_carol_key_0003', // leads, and in team-a, which owns the writer agent
  dave: 'cap_test_dave_key_0004', // not an approver group of any rule
} as const

export function approvalFiles(upstreamUrl: string, extraConfig = '') {
  return {
    agents: `agents:
  - id: writer
    owner: team-a
    tier: bounded-write
    connectors: [svc]
    api_keys: [{ hash: "${hash(WRITER_KEY)}" }]
  - id: admin-bot
    owner: team-b
    tier: privileged
    connectors: [svc]
    api_keys: [{ hash: "${hash(ADMIN_BOT_KEY)}" }]
approvers:
  - { id: alice, groups: [leads], keys: [{ hash: "${hash(APPROVER_KEYS.alice)}" }] }
  - { id: bob, groups: [leads], keys: [{ hash: "${hash(APPROVER_KEYS.bob)}" }] }
  - { id: carol, groups: [leads, team-a], keys: [{ hash: "${hash(APPROVER_KEYS.carol)}" }] }
  - { id: dave, groups: [finance], keys: [{ hash: "${hash(APPROVER_KEYS.dave)}" }] }
`,
    connectors: `connectors:
  - id: svc
    owner: team-a
    upstream: ${upstreamUrl}/base
    certified_until: 2099-12-31
    credential:
      source: env
      env: SVC_TOKEN
      inject: { header: authorization, format: "Bearer {secret}" }
    timeouts: { connect: 1s, headers: 2s, body: 2s }
    actions:
      - { name: items.list, method: GET, path: /items, risk: read }
      - { name: items.create, method: POST, path: /items, risk: write }
      - { name: items.delete, method: DELETE, path: "/items/{id}", risk: privileged }
`,
    policy: `version: 1
rules:
  - id: read-all
    effect: allow
    match: { actions: items.list }
  - id: create-small
    effect: allow
    match: { actions: items.create, body: { qty: { lte: 10 } } }
  - id: create-big-approval
    effect: require_approval
    approvers: [leads]
    reason: big orders need a lead
    match: { actions: items.create, body: { qty: { gt: 10 } } }
  - id: delete-approval
    effect: require_approval
    approvers: [leads]
    reason: deleting needs two leads
    match: { actions: items.delete }
`,
    extraConfig,
  }
}

export interface ApiAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown>
}

async function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<ApiAnswer> {
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers ?? {},
    body: init.body ?? null,
  })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
  }
}

/** An agent call through Corridor. */
export function agentCall(
  base: string,
  key: string,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<ApiAnswer> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}`, ...(init.headers ?? {}) }
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  return call(base + path, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers,
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })
}

/** An approver call on the admin API. */
export function approverCall(adminUrl: string, token: string | null, path: string, body?: unknown): Promise<ApiAnswer> {
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  return call(adminUrl + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
}

export async function approve(
  adminUrl: string,
  who: keyof typeof APPROVER_KEYS,
  id: string,
  reason = 'checked',
): Promise<ApiAnswer> {
  const shown = await approverCall(adminUrl, APPROVER_KEYS[who], `/approvals/${id}`)
  return approverCall(adminUrl, APPROVER_KEYS[who], `/approvals/${id}/approve`, { reason, digest: shown.body.digest })
}

/**
 * An approver who approves the pending request on a connector whose body shows `marker`, after
 * `delayMs`: long enough for the first attempt to be answered as held (approvals.wait is 1 s), so
 * that only the SDK's own retry can bring the result back.
 */
export async function approveWhenPending(
  adminUrl: string,
  approverKey: string,
  connector: string,
  marker: string,
  delayMs = 2_000,
): Promise<string> {
  const headers = { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }
  for (let i = 0; i < 200; i++) {
    const res = await request(`${adminUrl}/approvals`, { headers })
    const list = (await res.body.json()) as { approvals: { id: string; connector: string }[] }
    for (const candidate of list.approvals.filter((a) => a.connector === connector)) {
      const shown = await request(`${adminUrl}/approvals/${candidate.id}`, { headers })
      const detail = (await shown.body.json()) as { digest: string; body: string | null }
      if (!(detail.body ?? '').includes(marker)) continue
      await new Promise((r) => setTimeout(r, delayMs))
      const done = await request(`${adminUrl}/approvals/${candidate.id}/approve`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ reason: 'checked', digest: detail.digest }),
      })
      if (done.statusCode !== 200) throw new Error(`approving ${candidate.id} answered ${done.statusCode}`)
      await done.body.dump()
      return candidate.id
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`nothing pending on ${connector} with ${marker}`)
}

/** The approvals opened for a connector so far: their `held` events in a Corridor's audit trail. */
export function heldEvents(auditAndLogs: string, connector: string): string[] {
  return auditAndLogs
    .split('\n')
    .filter(
      (l) =>
        l.startsWith('{"type":"approval"') && l.includes('"event":"held"') && l.includes(`"connector":"${connector}"`),
    )
}
