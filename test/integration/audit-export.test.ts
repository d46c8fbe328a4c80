/**
 * The OCSF export: every entry of the trail, request records as API Activity (6003) with the
 * actor, operation, HTTP request and decision, everything else as Base Events, each carrying the
 * chain in `attestation` and the line as written in `raw_data`, so that the chain verifies on the
 * exported copy and a deleted or edited event there is found.
 */
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, standardFiles } from '../helpers/standard-policy.ts'

const run = promisify(execFile)
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(standardFiles(upstream.url), { SVC_TOKEN: 'export-token' })
  for (const path of ['/svc/items/1', '/svc/items/secret', '/svc/items?limit=5']) {
    const r = await fetch(`${fx.corridor.agentUrl}${path}`, { headers: { 'x-api-key': AGENT_KEY } })
    await r.arrayBuffer()
  }
  const del = await fetch(`${fx.corridor.agentUrl}/svc/items/1`, {
    method: 'DELETE',
    headers: { 'x-api-key': AGENT_KEY },
  })
  await del.arrayBuffer()
})

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

const corridor = (...args: string[]) =>
  run(process.execPath, ['bin/corridor.js', ...args, '--config', join(fx.dir, 'corridor.yaml')], { timeout: 20_000 })

it('an evidence report per connector and agent, with the chain status, as Markdown and CSV', async () => {
  const since = new Date(Date.now() - 3_600_000).toISOString()
  const md = await corridor('audit', 'report', '--since', since)
  expect(md.stdout).toContain('Hash chain: intact over')
  expect(md.stdout).toContain(
    '| svc | writer | 4 | allow 2, deny 2 | agent_tier 1, policy_rule 1 | denied 2, forwarded 2 | 0 | 0 |',
  )
  const csv = await corridor('audit', 'report', '--since', since, '--format', 'csv')
  expect(csv.stdout.trim().split('\n')).toEqual([
    'connector,agent,requests,allow,deny,require_approval,forwarded,refused_by_limits,refused_by_stops',
    '"svc","writer",4,2,2,0,2,0,0',
  ])
  const later = new Date(Date.now() + 3_600_000).toISOString()
  const none = await corridor('audit', 'report', '--since', later, '--format', 'csv')
  expect(none.stdout.trim().split('\n')).toHaveLength(1)
})

it('exports OCSF API Activity with attestation, and the chain verifies on the copy', async () => {
  const { stdout } = await corridor('audit', 'export', '--format', 'ocsf')
  const events = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, any>)
  const requests = events.filter((e) => e.class_uid === 6003)
  expect(requests).toHaveLength(4)
  const read = requests.find((e) => e.http_request.url.path === '/items/1' && e.activity_id === 2)
  expect(read).toMatchObject({
    category_uid: 6,
    class_name: 'API Activity',
    type_uid: 600302,
    status_id: 1,
    actor: { user: { uid: 'writer', type: 'Agent' } },
    api: { operation: 'items.get', service: { name: 'svc' } },
    http_response: { code: 200 },
    unmapped: { decision: 'allow', rule: 'read-all' },
  })
  const denied = requests.find((e) => e.http_request.url.path === '/items/secret')
  expect(denied).toMatchObject({ status_id: 2, status_code: 'policy_denied', unmapped: { rule: 'no-secret-items' } })
  expect(requests.find((e) => e.activity_id === 4)).toMatchObject({ activity_name: 'Delete', status_id: 2 })
  for (const e of events) {
    expect(e.attestation.chain_uid).toMatch(/^[0-9a-f-]{36}$/)
    expect(e.attestation.fingerprint.value).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.parse(e.raw_data as string).hash).toBe(e.attestation.fingerprint.value)
  }
  // Intents come along as Base Events: the copy holds the whole chain.
  expect(events.filter((e) => e.class_uid === 0).map((e) => e.message)).toContain('corridor intent')

  const copy = join(fx.dir, 'siem-copy.jsonl')
  writeFileSync(copy, stdout)
  const verified = await corridor('audit', 'verify', '--ocsf', copy)
  expect(verified.stdout).toContain('chain intact')

  // A SIEM copy with one event removed no longer verifies, and says where.
  const lines = stdout.trim().split('\n')
  const removedSeq = (JSON.parse(lines[3] as string) as { attestation: { seq: number } }).attestation.seq
  writeFileSync(copy, lines.filter((_, i) => i !== 3).join('\n') + '\n')
  const broken = await corridor('audit', 'verify', '--ocsf', copy).catch((e: { code: number; stderr: string }) => e)
  expect(broken).toMatchObject({ code: 1, stderr: expect.stringContaining(`at entry ${removedSeq}`) })
})

it('a copy bounded by --since starts each stream at its last signed checkpoint before it, and verifies', async () => {
  const keys = generateKeyPairSync('ed25519')
  writeFileSync(join(fx.dir, 'window.key.pem'), keys.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const own = await startCorridorFixture(
    {
      ...standardFiles(upstream.url),
      auditConfig: `signing_key_file: ${JSON.stringify(join(fx.dir, 'window.key.pem'))}, checkpoint_entries: 100`,
    },
    { SVC_TOKEN: 'export-token' },
  )
  const publicKey = join(fx.dir, 'window.pub.pem')
  writeFileSync(publicKey, keys.publicKey.export({ type: 'spki', format: 'pem' }))
  const ownCorridor = (...args: string[]) =>
    run(process.execPath, ['bin/corridor.js', ...args, '--config', join(own.dir, 'corridor.yaml')], {
      timeout: 20_000,
    })
  const requests = async (n: number, path: string) => {
    for (let i = 0; i < n; i++) {
      const r = await fetch(`${own.corridor.agentUrl}/svc/items/${path}`, { headers: { 'x-api-key': AGENT_KEY } })
      await r.arrayBuffer()
    }
  }
  try {
    await requests(60, 'before')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const since = new Date()
    await requests(7, 'inside')
    await new Promise((resolve) => setTimeout(resolve, 20))
    const until = new Date()
    // The window includes its last millisecond: the next request must start after it.
    await new Promise((resolve) => setTimeout(resolve, 20))
    await requests(7, 'after')

    const exported = await ownCorridor(
      'audit',
      'export',
      '--format',
      'ocsf',
      '--since',
      since.toISOString(),
      '--until',
      until.toISOString(),
    )
    const events = exported.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, any>)
    const paths = events.filter((e) => e.class_uid === 6003).map((e) => e.http_request.url.path as string)
    // Every request of the window, none after it; the run before it only back to the checkpoint.
    expect(paths.filter((p) => p === '/items/inside')).toHaveLength(7)
    expect(paths).not.toContain('/items/after')
    expect(paths.filter((p) => p === '/items/before').length).toBeLessThan(60)
    expect(events[0]?.raw_data).toMatch(/^\{"type":"checkpoint",/)
    const seqs = events.map((e) => e.attestation.seq as number)
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] as number) + i))

    const copy = join(own.dir, 'window-copy.jsonl')
    writeFileSync(copy, exported.stdout)
    // Only as a bounded copy: read as a whole export, its missing head is a break.
    const whole = await ownCorridor('audit', 'verify', '--ocsf', copy, '--public-key', publicKey).catch(
      (e: { code: number; stderr: string }) => e,
    )
    expect(whole).toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`entries 1 to ${(seqs[0] as number) - 1} are missing`),
    })
    const verified = await ownCorridor('audit', 'verify', '--ocsf', copy, '--bounded', '--public-key', publicKey)
    expect(verified.stdout).toContain('chain intact')
    expect(verified.stdout).toContain(`starts at entry ${seqs[0]}, a checkpoint whose signature verified`)

    // The copy still proves what it holds: an event removed from its middle is named.
    const lines = exported.stdout.trim().split('\n')
    writeFileSync(copy, lines.filter((_, i) => i !== 4).join('\n') + '\n')
    const broken = await ownCorridor('audit', 'verify', '--ocsf', copy, '--bounded', '--public-key', publicKey).catch(
      (e: { code: number; stderr: string }) => e,
    )
    expect(broken).toMatchObject({ code: 1, stderr: expect.stringContaining(`at entry ${seqs[4]}`) })
    // A copy whose first line is not a checkpoint does not pass as one that starts later.
    writeFileSync(copy, lines.slice(1).join('\n') + '\n')
    const headless = await ownCorridor('audit', 'verify', '--ocsf', copy, '--bounded', '--public-key', publicKey).catch(
      (e: { code: number; stderr: string }) => e,
    )
    expect(headless).toMatchObject({ code: 1 })
  } finally {
    await own.close()
  }
})
