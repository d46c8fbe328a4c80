/**
 * Checkpoints signed by Vault's transit engine, so that the signing key never sits on Corridor's
 * host: each checkpoint is written at once and its signature follows as its own entry; the final
 * checkpoint's signature is the one entry allowed after it. `corridor audit public-key` reads the
 * key from Vault and `audit verify` checks every signature with it (with each version's key, for a
 * trail signed across a key rotation). A Vault that stalls leaves checkpoints unsigned (named by
 * verify), never a request waiting or a shutdown stuck; a forged signature entry, chained again,
 * is found.
 */
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { sealedLine } from '../../src/audit/chain.ts'
import { startCorridorFixture, eventually, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'
import {
  CORRIDOR_VAULT_POLICY,
  startVaultForCorridor,
  vaultConfigYaml,
  type VaultSetup,
} from '../helpers/vault-fixture.ts'

const run = promisify(execFile)
let upstream: RecordingUpstream
let setup: VaultSetup

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  setup = await startVaultForCorridor()
  setup.vault.transitKey('transit', 'corridor-audit')
  // Corridor may ask for signatures and read the public key; nothing else of transit.
  setup.vault.setPolicy('corridor', {
    ...CORRIDOR_VAULT_POLICY,
    'transit/sign/corridor-audit': ['update'],
    'transit/keys/corridor-audit': ['read'],
  } as never)
})

afterAll(async () => {
  await upstream?.close()
  await setup?.vault.stop()
})

function start(): Promise<CorridorFixture> {
  return startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      auditConfig: 'signing_transit: { key: corridor-audit }, checkpoint_entries: 100',
      extraConfig: vaultConfigYaml(setup, '  timeout: 400ms\n'),
    },
    { SVC_TOKEN: 'transit-token', CORRIDOR_SECRET_ID: setup.secretId },
  )
}

async function traffic(fx: CorridorFixture, n: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${fx.corridor.agentUrl}/svc/items/${i}`, { headers: { 'x-api-key': AGENT_KEY } })
    await r.arrayBuffer()
    statuses.push(r.status)
  }
  return statuses
}

const trail = (fx: CorridorFixture): string[] =>
  readFileSync(fx.auditFile, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
const ofType = (lines: string[], type: string) =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e['type'] === type)

const cli = (...args: string[]) =>
  run(process.execPath, ['bin/corridor.js', ...args], {
    timeout: 20_000,
    env: { ...process.env, CORRIDOR_SECRET_ID: setup.secretId },
  }).catch((e: { code: number; stdout: string; stderr: string }) => e)

it('signs every checkpoint in Vault, publishes the key from Vault, and the trail verifies with it', async () => {
  const fx = await start()
  const config = join(fx.dir, 'corridor.yaml')
  try {
    expect(new Set(await traffic(fx, 160))).toEqual(new Set([200]))
    // Each checkpoint is followed, once Vault answers, by its signature.
    await eventually(() => {
      const lines = trail(fx)
      expect(ofType(lines, 'checkpoint').length).toBeGreaterThanOrEqual(3)
      expect(ofType(lines, 'checkpoint_signature').map((e) => e['for_seq'])).toEqual(
        ofType(lines, 'checkpoint').map((e) => e['seq']),
      )
    }, 5_000)
  } finally {
    await fx.close()
  }
  const lines = trail(fx)
  const last = JSON.parse(lines.at(-1) as string) as Record<string, unknown>
  const final = JSON.parse(lines.at(-2) as string) as Record<string, unknown>
  expect(final).toMatchObject({ type: 'checkpoint', final: true, signature: null, signature_follows: true })
  expect(last).toMatchObject({ type: 'checkpoint_signature', for_seq: final['seq'] })

  const published = (await cli('audit', 'public-key', '--config', config)) as { stdout: string }
  expect(published.stdout).toMatch(/^-----BEGIN PUBLIC KEY-----/)
  const publicKey = join(fx.dir, 'transit.pub.pem')
  writeFileSync(publicKey, published.stdout)
  const verified = await cli('audit', 'verify', fx.auditFile, '--public-key', publicKey)
  expect(verified).toMatchObject({ stdout: expect.stringContaining('chain intact') })
  expect((verified as { stdout: string }).stdout).not.toContain('UNSIGNED')
  expect((verified as { stdout: string }).stdout).not.toContain('without a final checkpoint')

  // After a rotation the latest key does not vouch for the old signatures; the version that made them does.
  setup.vault.transitKey('transit', 'corridor-audit')
  const rotated = (await cli('audit', 'public-key', '--config', config)) as { stdout: string }
  writeFileSync(join(fx.dir, 'rotated.pub.pem'), rotated.stdout)
  expect(await cli('audit', 'verify', fx.auditFile, '--public-key', join(fx.dir, 'rotated.pub.pem'))).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("does not verify (made with key version 1: add that version's public key)"),
  })
  // Each signature entry names the key version that made it.
  expect(ofType(lines, 'checkpoint_signature').map((e) => e['key_version'])).toEqual(
    ofType(lines, 'checkpoint_signature').map(() => 1),
  )
  const first = (await cli('audit', 'public-key', '--config', config, '--key-version', '1')) as { stdout: string }
  expect(first.stdout).toBe(published.stdout)

  // A trail that spans the rotation (a Corridor started after it signs with version 2) verifies
  // with each version's key given; with the latest alone, the older signatures are named.
  const after = await start()
  try {
    expect(new Set(await traffic(after, 120))).toEqual(new Set([200]))
  } finally {
    await after.close()
  }
  expect(new Set(ofType(trail(after), 'checkpoint_signature').map((e) => e['key_version']))).toEqual(new Set([2]))
  const spanning = join(fx.dir, 'spanning.log')
  writeFileSync(spanning, [...lines, ...trail(after)].join('\n') + '\n')
  const rotatedKey = join(fx.dir, 'rotated.pub.pem')
  const both = await cli('audit', 'verify', spanning, '--public-key', publicKey, '--public-key', rotatedKey)
  expect(both).toMatchObject({ stdout: expect.stringContaining('2 stream(s)') })
  expect((both as { stdout: string }).stdout).toContain('chain intact')
  expect((both as { stdout: string }).stdout).not.toContain('UNSIGNED')
  expect(await cli('audit', 'verify', spanning, '--public-key', rotatedKey)).toMatchObject({
    code: 1,
    stderr: expect.stringContaining('made with key version 1'),
  })

  // A signature entry forged and the chain sealed again after it: the signature does not verify.
  const at = lines.findIndex((l) => l.startsWith('{"type":"checkpoint_signature",'))
  const forged = [...lines]
  const entry = JSON.parse(lines[at] as string) as { signature: string }
  const other = JSON.parse(lines[lines.length - 1] as string) as { signature: string }
  forged[at] = (lines[at] as string).replace(entry.signature, other.signature)
  for (let i = at; i < forged.length; i++) {
    const prev = i === 0 ? '' : (forged[i - 1] as string).slice(-66, -2)
    const body = (forged[i] as string).slice(0, (forged[i] as string).lastIndexOf(',"hash":"')) + '}'
    forged[i] = sealedLine(body.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${prev}"`))
  }
  const forgedFile = join(fx.dir, 'forged.log')
  writeFileSync(forgedFile, forged.join('\n') + '\n')
  const caught = await cli('audit', 'verify', forgedFile, '--public-key', publicKey)
  expect(caught).toMatchObject({
    code: 1,
    stderr: expect.stringContaining(`at entry ${JSON.parse(lines[at] as string).seq as number}`),
  })
  expect((caught as { stderr: string }).stderr).toContain('signature of the checkpoint')
}, 60_000)

it('a Vault that stalls leaves checkpoints unsigned, named by verify; requests and shutdown do not wait for it', async () => {
  const fx = await start()
  const publicKey = join(fx.dir, 'transit.pub.pem')
  try {
    const published = (await cli('audit', 'public-key', '--config', join(fx.dir, 'corridor.yaml'))) as {
      stdout: string
    }
    writeFileSync(publicKey, published.stdout)
    // Every Vault answer now comes after Corridor's 400 ms bound.
    setup.vault.faults.delayMs = 1_500
    const started = performance.now()
    expect(new Set(await traffic(fx, 120))).toEqual(new Set([200]))
    expect(performance.now() - started).toBeLessThan(20_000)
  } finally {
    const closing = performance.now()
    await fx.close()
    expect(performance.now() - closing).toBeLessThan(10_000)
    setup.vault.faults.delayMs = 0
  }
  const lines = trail(fx)
  expect(ofType(lines, 'checkpoint').length).toBeGreaterThanOrEqual(2)
  expect(ofType(lines, 'checkpoint_signature')).toEqual([])
  const verified = await cli('audit', 'verify', fx.auditFile, '--public-key', publicKey)
  // Intact as a chain (exit 0), and every checkpoint named as vouching for nothing.
  expect(verified).toMatchObject({ stdout: expect.stringContaining('chain intact') })
  const unsigned = (verified as { stdout: string }).stdout.split('\n').filter((l) => l.includes('UNSIGNED'))
  expect(unsigned).toEqual([
    expect.stringContaining(
      `no signature vouches for any entry: the checkpoint(s) at entry ${ofType(lines, 'checkpoint')
        .map((e) => e['seq'])
        .join(', ')} are UNSIGNED`,
    ),
  ])
}, 60_000)
