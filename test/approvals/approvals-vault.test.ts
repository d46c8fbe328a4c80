/**
 * A held request whose action asks for a per-request Vault lease: no lease exists while it
 * waits, one is minted for the release alone, the upstream sees it live, and it is revoked once
 * the release has its answer.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { agentCall, approve, approvalFiles, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import {
  startCheckingUpstream,
  startVaultForCorridor,
  vaultConfigYaml,
  type CheckedCall,
  type VaultSetup,
} from '../helpers/vault-fixture.ts'
import type { RecordingUpstream } from '../helpers/recording-upstream.ts'

let setup: VaultSetup
let upstream: RecordingUpstream & { verdicts: CheckedCall[] }
let fx: CorridorFixture

beforeAll(async () => {
  setup = await startVaultForCorridor()
  upstream = await startCheckingUpstream(setup)
  const files = approvalFiles(upstream.url, `${vaultConfigYaml(setup)}approvals: { wait: 0s }\n`)
  files.connectors = files.connectors
    .replace(
      '      source: env\n      env: SVC_TOKEN\n      inject: { header: authorization, format: "Bearer {secret}" }',
      '      source: vault_dynamic\n      path: database/creds/app\n      inject: { basic: { username: "{username}", password: "{password}" } }',
    )
    .replace(
      '{ name: items.create, method: POST, path: /items, risk: write }',
      '{ name: items.create, method: POST, path: /items, risk: write, lease: per_request }',
    )
  fx = await startCorridorFixture(files, { CORRIDOR_SECRET_ID: setup.secretId })
})
afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await setup?.vault.stop()
})

it('mints the per-request lease only on release, and revokes it after', async () => {
  const before = setup.vault.callCount('database/creds/app')
  const held = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', { body: { qty: 99, note: 'leased' } })
  const id = held.body.approval_id as string
  expect(setup.vault.callCount('database/creds/app') - before).toBe(0)
  expect((await approve(fx.corridor.adminUrl, 'alice', id)).status).toBe(200)
  await eventually(() =>
    expect(upstream.verdicts.filter((v) => v.path === '/base/items')).toEqual([
      { verdict: 'live', path: '/base/items' },
    ]),
  )
  expect(setup.vault.callCount('database/creds/app') - before).toBe(1)
  let leaseId: string | null | undefined
  await eventually(() => {
    leaseId = fx.auditRecords().find((r) => r.approval?.id === id && r.outcome === 'forwarded')?.credential?.lease_id
    expect(leaseId).toMatch(/^database\/creds\/app\//)
  })
  await eventually(() => expect(setup.vault.liveLeases('database/creds/app').map((l) => l.id)).not.toContain(leaseId))
  const result = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', {
    body: { qty: 99, note: 'leased' },
    headers: { 'x-corridor-approval': id },
  })
  expect(result.status).toBe(200)
  expect(result.body).toEqual({ verdict: 'live' })
})
