/**
 * The policy files every Corridor variant of the benchmark runs on: one agent (API key or JWT),
 * a connector to the sample upstream, and a policy of N rules of which three matter to the
 * benchmark's requests. The rest are realistic filler: a tenth are per-agent rules on the same
 * actions (for other agents), the others cover 100 other actions.
 */
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { shippedNodeFlags } from '../testkit/shipped-flags.ts'

export const BENCH_KEY = 'cor_bench_agent_key'
export const JWT_ISSUER = 'https://idp.bench.local'
export const JWT_AUDIENCE = 'corridor-bench'

/** This checkout's shipped Node flags, so that the benchmarks measure what ships. */
export const SHIPPED_NODE_FLAGS = shippedNodeFlags(join(import.meta.dirname, '..'))

export type CredentialVariant = 'env' | 'vault_kv' | 'vault_dynamic'

export interface BenchConfig {
  readonly origin: string
  readonly rules: number
  readonly credential: CredentialVariant
  /** Set: agents authenticate with JWTs verified against this JWKS file. */
  readonly jwksFile: string | null
  readonly vault: { address: string; token: string } | null
  /** Set: approvals in this Redis (needed for several workers), and stops and limit counters. */
  readonly redisUrl?: string
  /** One limit over the benchmark's small GET and POST: a rate limit, or a budget (counted, never reached). */
  readonly limit?: 'rate' | 'budget'
  /** false: no Prometheus metrics (on by default, as shipped). */
  readonly metrics?: boolean
  /** An OTLP/HTTP collector: traces on (off by default, as shipped). */
  readonly traces?: string
  /** With traces: the share of new traces recorded (default 1). */
  readonly sample?: number
  /** With traces: true also records refused, failed and held requests (`always_record`); default: by sampling alone, as shipped. */
  readonly alwaysRecord?: boolean
}

const LIMITS = {
  rate: '  - { id: bench-rate, match: { actions: [small.get, items.create] }, rate: 1000000000/1d }\n',
  budget:
    '  - { id: bench-budget, match: { actions: [small.get, items.create] }, budget: { max: 1000000000000, window: 1d } }\n',
}

export function writeBenchConfig(dir: string, c: BenchConfig): string {
  // With JWT identity the token's `sub` names the agent; with keys, the key's hash does.
  const identity =
    c.jwksFile === null
      ? `, api_keys: [{ hash: "sha256:${createHash('sha256').update(BENCH_KEY).digest('hex')}" }]`
      : ''
  writeFileSync(
    join(dir, 'agents.yaml'),
    `agents:\n  - { id: bench, owner: perf, tier: transactional, connectors: [svc]${identity} }\n` +
      Array.from(
        { length: 50 },
        (_, i) => `  - { id: other-${i}, owner: perf, tier: read-only, connectors: [svc] }\n`,
      ).join(''),
  )
  const credential =
    c.credential === 'env'
      ? '{ source: env, env: BENCH_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }'
      : c.credential === 'vault_kv'
        ? '{ source: vault_kv, mount: kv, path: bench/api, field: token, cache: 60s, inject: { header: authorization, format: "Bearer {secret}" } }'
        : '{ source: vault_dynamic, path: database/creds/bench, inject: { basic: { username: "{username}", password: "{password}" } } }'
  writeFileSync(
    join(dir, 'connectors.yaml'),
    `connectors:\n  - id: svc\n    owner: perf\n    upstream: ${c.origin}\n    certified_until: 2099-01-01\n    credential: ${credential}\n    actions:\n      - { name: small.get, method: GET, path: /small, risk: read }\n      - { name: large.get, method: GET, path: /large, risk: read }\n      - { name: events.get, method: GET, path: /events, risk: read }\n      - { name: items.create, method: POST, path: /items, risk: write }\n` +
      Array.from(
        { length: 100 },
        (_, i) => `      - { name: filler.a${i}, method: GET, path: "/filler/${i}/{id}", risk: read }\n`,
      ).join(''),
  )
  const filler = Array.from({ length: Math.max(0, c.rules - 3) }, (_, i) =>
    i % 10 === 0
      ? `  - { id: filler-${i}, effect: deny, match: { actions: [small.get, items.create], agents: [other-${i % 50}], query: { page: { gt: ${i} } } } }\n`
      : `  - { id: filler-${i}, effect: allow, match: { actions: filler.a${i % 100}, agents: [other-${i % 50}], params: { id: "${i}" } } }\n`,
  ).join('')
  writeFileSync(
    join(dir, 'policy.yaml'),
    `version: 1\nrules:\n  - { id: reads, effect: allow, match: { actions: [small.get, large.get, events.get] } }\n  - { id: create, effect: allow, match: { actions: items.create, body: { qty: { lte: 10 } } } }\n  - { id: no-big, effect: deny, match: { actions: items.create, body: { qty: { gt: 100 } } } }\n${filler}` +
      (c.limit === undefined ? '' : `limits:\n${LIMITS[c.limit]}`),
  )
  const identityConfig =
    c.jwksFile === null
      ? ''
      : `identity:\n  agent_jwt: { issuer: "${JWT_ISSUER}", audience: ${JWT_AUDIENCE}, algorithms: [ES256], jwks_file: ${JSON.stringify(c.jwksFile)} }\n`
  const vaultConfig =
    c.vault === null
      ? ''
      : `vault:\n  address: ${c.vault.address}\n  auth: { method: token, token_env: BENCH_VAULT_TOKEN }\n`
  const approvalsConfig =
    (c.redisUrl === undefined ? '' : `approvals:\n  redis: { url: "${c.redisUrl}" }\n`) +
    (c.metrics !== false && c.traces === undefined
      ? ''
      : `telemetry: { metrics: ${c.metrics !== false}${c.traces === undefined ? '' : `, traces: { endpoint: "${c.traces}"${c.sample === undefined ? '' : `, sample: ${c.sample}`}${c.alwaysRecord === true ? ', always_record: { outcomes: [denied, held, rejected, unavailable, upstream_error, upstream_timeout], errors: true }' : ''} }`} }\n`)
  const file = join(dir, 'corridor.yaml')
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nwatch_policy: false\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n${identityConfig}${vaultConfig}${approvalsConfig}`,
  )
  return file
}
