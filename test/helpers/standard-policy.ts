/** The policy files most integration tests run against, pointed at a test upstream. */
import { createHash, randomUUID } from 'node:crypto'

export const AGENT_KEY = 'cor_test_agent_key_0001'
export const READER_KEY = 'cor_test_reader_key_0002'
export const SUSPENDED_KEY = 'cor_test_suspended_key_0003'
export const hash = (key: string): string => `sha256:${createHash('sha256').update(key).digest('hex')}`

export function newCanary(): string {
  return `CANARY-${randomUUID()}`
}

export function standardFiles(
  upstreamUrl: string,
  opts: { connectorExtra?: string; rulesExtra?: string; certifiedUntil?: string } = {},
) {
  return {
    agents: `agents:
  - id: writer
    owner: team-a
    tier: bounded-write
    connectors: [svc]
    api_keys: [{ hash: "${hash(AGENT_KEY)}" }]
  - id: reader
    owner: team-b
    tier: read-only
    connectors: [svc]
    api_keys: [{ hash: "${hash(READER_KEY)}" }]
  - id: retired
    owner: team-a
    tier: read-only
    status: suspended
    connectors: [svc]
    api_keys: [{ hash: "${hash(SUSPENDED_KEY)}" }]
`,
    connectors: `connectors:
  - id: svc
    owner: team-a
    upstream: ${upstreamUrl}/base
    hosts: [svc.corridor.test]
    certified_until: ${opts.certifiedUntil ?? '2099-12-31'}
    agent_key_header: x-api-key
    credential:
      source: env
      env: SVC_TOKEN
      inject: { header: authorization, format: "Bearer {secret}" }
    limits: { max_body: 4KiB, max_json_depth: 8 }
    timeouts: { connect: 1s, headers: 1s, body: 1s }
${opts.connectorExtra ?? ''}    actions:
      - { name: items.list, method: GET, path: /items, risk: read }
      - { name: items.get, method: GET, path: "/items/{id}", risk: read }
      - { name: items.create, method: POST, path: /items, risk: write }
      - { name: items.delete, method: DELETE, path: "/items/{id}", risk: privileged }
      - { name: events.stream, method: GET, path: /events, risk: read }
      - { name: slow.get, method: GET, path: /slow, risk: read }
      - { name: redirect.get, method: GET, path: /redirect, risk: read }
`,
    policy: `version: 1
rules:
  - id: read-all
    effect: allow
    match: { connectors: svc, actions: [items.list, items.get, events.stream, slow.get, redirect.get] }
  - id: create-small
    effect: allow
    match: { actions: items.create, body: { qty: { lte: 10 } } }
  - id: create-big-approval
    effect: require_approval
    approvers: [leads]
    match: { actions: items.create, body: { qty: { gt: 10 } } }
  - id: no-secret-items
    effect: deny
    reason: secret items are off limits
    match: { actions: items.get, params: { id: secret } }
  - id: report-large-lists
    effect: deny
    mode: shadow
    match: { actions: items.list, query: { limit: { gt: 100 } } }
${opts.rulesExtra ?? ''}`,
  }
}
