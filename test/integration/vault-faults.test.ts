/**
 * Vault misbehaving under Corridor: slow, sealed, killed mid-traffic, refusing, Corridor's token
 * revoked, leases revoked or expiring during traffic. In every case the agent gets a fast 503
 * problem+json (credential_unavailable) or a real answer, nothing reaches the upstream without a
 * live credential, Corridor recovers by itself, and no secret reaches logs, audit or errors.
 */
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { scrapeMetrics } from '../helpers/prometheus.ts'
import { hash, newCanary } from '../helpers/standard-policy.ts'
import {
  startCheckingUpstream,
  startVaultForCorridor,
  vaultConfigYaml,
  type VaultSetup,
} from '../helpers/vault-fixture.ts'

const AGENTS = ['a', 'b', 'c', 'd', 'e'] as const
const keyOf = (agent: string): string => `cor_fault_agent_${agent}_000000`

interface Rig {
  setup: VaultSetup
  upstream: Awaited<ReturnType<typeof startCheckingUpstream>>
  fx: CorridorFixture
  kvCanary: string
  close(): Promise<void>
}

const open: Rig[] = []
afterEach(async () => {
  for (const rig of open.splice(0)) await rig.close()
})

async function rig(opts: { timeout?: string; tokenTtlSec?: number; shortTtlSec?: number } = {}): Promise<Rig> {
  const setup = await startVaultForCorridor({ tokenTtlSec: opts.tokenTtlSec, shortTtlSec: opts.shortTtlSec })
  const kvCanary = newCanary()
  setup.vault.kvPut('kv', 'records/api', { api_key: kvCanary })
  const upstream = await startCheckingUpstream(setup, [kvCanary])
  const connector = (id: string, credential: string) => `  - id: ${id}
    owner: t
    upstream: ${upstream.url}/${id}
    certified_until: 2099-01-01
    credential:
${credential}
    actions: [{ name: get, method: GET, path: /things, risk: read }, { name: write, method: POST, path: /things, risk: write, lease: per_request }]
`
  const dynamic = (path: string, extra = '') =>
    `      source: vault_dynamic\n      path: ${path}\n      scope: agent\n${extra}      inject: { basic: { username: "{username}", password: "{password}" } }`
  const fx = await startCorridorFixture(
    {
      agents: `agents:\n${AGENTS.map((a) => `  - { id: ${a}, owner: t, tier: bounded-write, connectors: [db, dbr, short, kv], api_keys: [{ hash: "${hash(keyOf(a))}" }] }\n`).join('')}`,
      connectors: `connectors:\n${connector('db', dynamic('database/creds/app'))}${connector('dbr', dynamic('database/creds/app', '      refresh_on_reject: true\n'))}${connector('short', dynamic('database/creds/short'))}${connector('kv', '      source: vault_kv\n      mount: kv\n      path: records/api\n      field: api_key\n      cache: 200ms\n      inject: { header: authorization, format: "Bearer {secret}" }')}`,
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow }\n',
      extraConfig: vaultConfigYaml(setup, opts.timeout === undefined ? '' : `  timeout: ${opts.timeout}\n`),
    },
    { CORRIDOR_SECRET_ID: setup.secretId },
  )
  const r: Rig = {
    setup,
    upstream,
    fx,
    kvCanary,
    async close() {
      await fx.close()
      await upstream.close()
      await setup.vault.stop()
      // Secrets Corridor handled: the KV canary, its AppRole secret_id, Vault's root token.
      const output = fx.allOutput()
      for (const secret of [kvCanary, setup.secretId, setup.vault.rootToken]) expect(output).not.toContain(secret)
    },
  }
  open.push(r)
  return r
}

interface Answer {
  status: number
  code: string | null
  retryAfter: string | null
  ms: number
  body: string
}

async function call(r: Rig, agent: string, path: string, method: 'GET' | 'POST' = 'GET'): Promise<Answer> {
  const started = performance.now()
  const res = await request(r.fx.corridor.agentUrl + path, {
    method,
    headers: {
      authorization: `Bearer ${keyOf(agent)}`,
      ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
    },
    body: method === 'POST' ? '{}' : undefined,
  })
  const body = await res.body.text()
  const ms = performance.now() - started
  const code = res.headers['content-type']?.toString().includes('json')
    ? ((JSON.parse(body) as { code?: string }).code ?? null)
    : null
  return {
    status: res.statusCode,
    code,
    retryAfter: (res.headers['retry-after'] as string | undefined) ?? null,
    ms,
    body,
  }
}

describe('Vault faults', () => {
  it('a slow Vault: 503 credential_unavailable within the default 2.5 s bound, nothing forwarded, then recovery', async () => {
    const r = await rig()
    r.setup.vault.faults.delayMs = 5_000
    const answer = await call(r, 'a', '/db/things')
    expect(answer.status).toBe(503)
    expect(answer.code).toBe('credential_unavailable')
    expect(answer.retryAfter).not.toBeNull()
    expect(answer.ms).toBeGreaterThan(2_400)
    expect(answer.ms).toBeLessThan(3_000)
    expect(answer.body).not.toContain(r.setup.vault.rootToken)
    expect(r.upstream.received).toHaveLength(0)
    await eventually(() =>
      expect(r.fx.auditRecords().at(-1)).toMatchObject({
        outcome: 'unavailable',
        error_code: 'credential_unavailable',
        error_detail: expect.stringMatching(/timeout$/),
      }),
    )

    r.setup.vault.faults.delayMs = 0
    await new Promise((res) => setTimeout(res, 1_100)) // the failure is replayed for 1 s, then Vault is asked again
    expect((await call(r, 'a', '/db/things')).status).toBe(200)
  })

  it('a sealed Vault: fast 503 audited as vault_sealed; unsealed, Corridor recovers by itself', async () => {
    const r = await rig()
    expect((await call(r, 'a', '/db/things')).status).toBe(200) // logged in, lease for a
    r.setup.vault.faults.sealed = true
    const answer = await call(r, 'b', '/db/things')
    expect(answer.status).toBe(503)
    expect(answer.ms).toBeLessThan(500)
    await eventually(() =>
      expect(r.fx.auditRecords().at(-1)).toMatchObject({ agent: 'b', error_detail: 'vault_sealed' }),
    )
    // Counted by connector, source and cause, as a Prometheus parser reads /metrics.
    const failures = (await scrapeMetrics(r.fx.corridor.adminUrl)).samples.filter(
      ([name]) => name === 'corridor_credential_failures_total',
    )
    expect(failures).toEqual([
      ['corridor_credential_failures_total', { connector: 'db', source: 'vault_dynamic', cause: 'vault_sealed' }, 1],
    ])
    // The lease a already holds is still valid: sealing Vault does not take it away.
    expect((await call(r, 'a', '/db/things')).status).toBe(200)
    r.setup.vault.faults.sealed = false
    await new Promise((res) => setTimeout(res, 1_100))
    expect((await call(r, 'b', '/db/things')).status).toBe(200)
    expect(r.upstream.verdicts.every((v) => v.verdict === 'live')).toBe(true)
  })

  it('Vault killed mid-traffic and restarted: every answer is a live-credential 200 or a fast 503, and traffic resumes', async () => {
    const r = await rig({ timeout: '1s' })
    const port = Number(new URL(r.setup.vault.address).port)
    const answers: Answer[] = []
    let running = true
    const traffic = (async () => {
      let i = 0
      while (running) {
        // Per-request leases: every request needs Vault; KV reads every 200 ms.
        answers.push(
          await call(
            r,
            AGENTS[i % AGENTS.length] as string,
            i % 2 === 0 ? '/db/things' : '/kv/things',
            i % 2 === 0 ? 'POST' : 'GET',
          ),
        )
        i++
      }
    })()
    await new Promise((res) => setTimeout(res, 700))
    await r.setup.vault.stop()
    await new Promise((res) => setTimeout(res, 1_000))
    await r.setup.vault.start(port)
    await new Promise((res) => setTimeout(res, 2_000))
    running = false
    await traffic

    const failures = answers.filter((a) => a.status !== 200)
    expect(answers.length).toBeGreaterThan(20)
    expect(failures.length).toBeGreaterThan(0) // Vault really was down for a while
    for (const f of failures) {
      expect(f.status).toBe(503)
      expect(f.code).toBe('credential_unavailable')
      expect(f.ms).toBeLessThan(1_500)
    }
    expect(answers.slice(-5).every((a) => a.status === 200)).toBe(true)
    expect(r.upstream.verdicts.length).toBe(answers.filter((a) => a.status === 200).length)
    expect(r.upstream.verdicts.every((v) => v.verdict === 'live')).toBe(true)
  })

  it('permission denied: 503 vault_permission_denied after exactly one fresh login, and no retry storm', async () => {
    const r = await rig()
    expect((await call(r, 'a', '/kv/things')).status).toBe(200)
    const loginsBefore = r.setup.vault.callCount('auth/approle/login')
    const credsBefore = r.setup.vault.callCount('database/creds/app')
    r.setup.vault.setPolicy('corridor', { 'kv/data/records/*': ['read'] }) // the database grant is withdrawn
    const answer = await call(r, 'a', '/db/things')
    expect(answer.status).toBe(503)
    await eventually(() =>
      expect(r.fx.auditRecords().at(-1)).toMatchObject({ error_detail: 'vault_permission_denied' }),
    )
    expect(r.setup.vault.callCount('auth/approle/login') - loginsBefore).toBe(1)
    expect(r.setup.vault.callCount('database/creds/app') - credsBefore).toBe(2)
    // Within the back-off, further requests do not reach Vault at all.
    for (let i = 0; i < 5; i++) expect((await call(r, 'a', '/db/things')).status).toBe(503)
    expect(r.setup.vault.callCount('database/creds/app') - credsBefore).toBe(2)
    expect(r.upstream.received.filter((q) => q.url.startsWith('/db/'))).toHaveLength(0)
  })

  it('Corridor’s own token revoked behind its back: it logs in again once and carries on', async () => {
    const r = await rig()
    expect((await call(r, 'a', '/db/things')).status).toBe(200)
    expect(r.setup.vault.revokeTokensFrom('auth/approle/login')).toBe(1)
    const loginsBefore = r.setup.vault.callCount('auth/approle/login')
    expect((await call(r, 'b', '/db/things')).status).toBe(200)
    expect(r.setup.vault.callCount('auth/approle/login') - loginsBefore).toBe(1)
  })

  it('Corridor’s own token expiring: a short-TTL login is renewed or replaced before it lapses', async () => {
    const r = await rig({ tokenTtlSec: 2 })
    for (let i = 0; i < 6; i++) {
      expect((await call(r, AGENTS[i % AGENTS.length] as string, '/db/things', 'POST')).status).toBe(200)
      await new Promise((res) => setTimeout(res, 600))
    }
    expect(
      r.setup.vault.callCount('auth/token/renew-self') + r.setup.vault.callCount('auth/approle/login'),
    ).toBeGreaterThan(1)
  })

  it('a lease revoked in Vault: replaced after the upstream’s 401 only where the connector opts in, and never in a loop', async () => {
    const r = await rig()
    expect((await call(r, 'a', '/dbr/things')).status).toBe(200)
    expect((await call(r, 'a', '/db/things')).status).toBe(200)
    for (const lease of r.setup.vault.liveLeases('database/creds/app')) r.setup.vault.revokeLease(lease.id)
    const creds = r.setup.vault.callCount('database/creds/app')

    // Opted in: the refused request is answered as the upstream answered (no retry), the next one gets a fresh lease.
    expect((await call(r, 'a', '/dbr/things')).status).toBe(401)
    expect((await call(r, 'a', '/dbr/things')).status).toBe(200)
    expect(r.setup.vault.callCount('database/creds/app') - creds).toBe(1)
    // Not opted in: the cached lease stays until its margin; Corridor does not go back to Vault.
    expect((await call(r, 'a', '/db/things')).status).toBe(401)
    expect((await call(r, 'a', '/db/things')).status).toBe(401)
    expect(r.setup.vault.callCount('database/creds/app') - creds).toBe(1)
  })

  it('leases expiring during traffic are replaced before they lapse: the upstream never sees a dead credential', async () => {
    const r = await rig({ shortTtlSec: 2 })
    const deadline = Date.now() + 4_500
    let n = 0
    while (Date.now() < deadline) {
      expect((await call(r, 'a', '/short/things')).status).toBe(200)
      n++
      await new Promise((res) => setTimeout(res, 50))
    }
    expect(n).toBeGreaterThan(30)
    expect(r.setup.vault.callCount('database/creds/short')).toBeGreaterThanOrEqual(3)
    expect(r.upstream.verdicts.every((v) => v.verdict === 'live')).toBe(true)
  })
})
