/** The approvers' command line against a running Corridor: list, show, approve with a reason, and refusals. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { agentCall, approvalFiles, APPROVER_KEYS, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { corridorCli, type CliResult } from '../helpers/cli.ts'

const run = promisify(execFile)
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  fx = await startCorridorFixture(approvalFiles(upstream.url, 'approvals: { wait: 0s }\n'), { SVC_TOKEN: 'cli-token' })
})
afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

function cli(token: string | undefined, ...args: string[]): Promise<CliResult> {
  return corridorCli(['approvals', ...args, '--admin', fx.corridor.adminUrl], { CORRIDOR_APPROVER_TOKEN: token ?? '' })
}

it('lists, shows and approves a held request; the decision needs a token and a reason', async () => {
  const held = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', {
    body: { qty: 44, note: 'via-cli' },
    headers: { 'x-corridor-intent': 'cli intent' },
  })
  const id = held.body.approval_id as string

  expect((await cli(undefined, 'list')).code).toBe(2)
  const list = await cli(APPROVER_KEYS.alice, 'list')
  expect(list.code).toBe(0)
  expect(list.stdout).toContain(id)
  expect(list.stdout).toContain('writer → svc.items.create')
  expect(list.stdout).toContain('intent: cli intent')

  const show = await cli(APPROVER_KEYS.alice, 'show', id)
  expect(show.stdout).toContain('{"qty":44,"note":"via-cli"}')
  expect(show.stdout).toMatch(/digest\s+sha256:[0-9a-f]{64}/)

  expect((await cli(APPROVER_KEYS.alice, 'approve', id)).code).toBe(2) // no --reason
  const owner = await cli(APPROVER_KEYS.carol, 'approve', id, '--reason', 'mine')
  expect(owner.code).toBe(1)
  expect(owner.stderr).toContain('approver_not_eligible')

  const approved = await cli(APPROVER_KEYS.alice, 'approve', id, '--reason', 'restock approved')
  expect(approved.code).toBe(0)
  expect(approved.stdout).toContain(`${id}: approved`)
  await eventually(() => expect(upstream.received.filter((r) => r.body.toString().includes('via-cli'))).toHaveLength(1))
  const result = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', {
    body: { qty: 44, note: 'via-cli' },
    headers: { 'x-corridor-approval': id },
  })
  expect(result.status).toBe(200)

  // The audit trail of one approval: the hold, the decision, the one forward, the collection.
  const { stdout } = await run(
    process.execPath,
    ['bin/corridor.js', 'audit', 'query', '--config', `${fx.dir}/corridor.yaml`, '--approval', id],
    { timeout: 15_000 },
  )
  const lines = stdout
    .trim()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as {
          type: string
          outcome?: string
          event?: string
          approval?: { approved_by: { approver: string; reason: string }[] }
        },
    )
  expect(
    lines
      .filter((l) => l.type === 'request')
      .map((l) => l.outcome)
      .sort(),
  ).toEqual(['forwarded', 'held', 'released'])
  expect(lines.filter((l) => l.type === 'approval').map((l) => l.event)).toEqual(
    expect.arrayContaining(['held', 'approved', 'executed']),
  )
  expect(lines.find((l) => l.outcome === 'forwarded')?.approval?.approved_by).toEqual([
    expect.objectContaining({ approver: 'alice', reason: 'restock approved' }),
  ])

  // The same story told from the held request's id, in time order.
  const heldRecord = lines.find((l) => l.outcome === 'held') as unknown as { request_id: string }
  const config = `${fx.dir}/corridor.yaml`
  const trace = await corridorCli(['audit', 'trace', heldRecord.request_id, '--config', config])
  expect(trace.code).toBe(0)
  const story = trace.stdout.trim().split('\n')
  const at = (step: string): number => story.findIndex((line) => line.includes(step))
  const order = [
    'intent to hold',
    `approval ${id} approved by alice (approver_key): restock approved`,
    'intent to release',
    `approval ${id} executed`,
  ].map(at)
  expect(order.every((i) => i >= 0)).toBe(true)
  expect([...order].sort((a, b) => a - b)).toEqual(order)
  for (const step of [
    `approval ${id} held`,
    `request ${heldRecord.request_id} held 503`,
    'forwarded 200',
    'released 200',
  ])
    expect(at(step)).toBeGreaterThanOrEqual(0)
  expect(story.join('\n')).toContain('require_approval by rule create-big-approval: big orders need a lead')
  const unknown = await corridorCli(['audit', 'trace', 'no-such-id', '--config', config])
  expect(unknown).toMatchObject({
    code: 1,
    stderr: expect.stringContaining("nothing in the audit trail for 'no-such-id'"),
  })

  // The same requests found by the intent the agent stated, as a table a reviewer scans.
  const csv = await corridorCli(['audit', 'query', '--config', config, '--intent', 'CLI INTENT', '--format', 'csv'])
  const rows = csv.stdout.trim().split('\n')
  expect(rows[0]).toBe(
    'time,request_id,agent,user,connector,action,method,path,decision,rule,outcome,status,error_code,approval_id',
  )
  expect(rows.slice(1).map((r) => [r.split(',')[2], r.split(',')[10]])).toEqual(
    expect.arrayContaining([['writer', 'held']]),
  )
  expect(rows.slice(1).every((r) => r.endsWith(id))).toBe(true)
  const none = await corridorCli(['audit', 'query', '--config', config, '--owner', 'nobody', '--format', 'table'])
  expect(none.stdout.trim().split('\n')).toHaveLength(1)
}, 60_000) // the CLI started eleven times, one after another: on a busy machine each start can take seconds
