/** The operators' command line against a running Corridor: stop (dry run first), stops, resume by scope and by id, keys mint --operator. */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { agentCall, approvalFiles, WRITER_KEY } from '../helpers/approvals-fixture.ts'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { corridorCli, type CliResult } from '../helpers/cli.ts'
import { hash } from '../helpers/standard-policy.ts'

const OPERATOR_KEY = 'cop_test_operator_key_0002'
let upstream: RecordingUpstream
let fx: CorridorFixture

beforeAll(async () => {
  upstream = await startRecordingUpstream()
  const files = approvalFiles(upstream.url, 'approvals: { wait: 0s }\n')
  fx = await startCorridorFixture(
    { ...files, agents: `${files.agents}operators:\n  - { id: oncall, keys: [{ hash: "${hash(OPERATOR_KEY)}" }] }\n` },
    { SVC_TOKEN: 'cli-token' },
  )
})
afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

function cli(token: string | undefined, ...args: string[]): Promise<CliResult> {
  return corridorCli(args, { CORRIDOR_OPERATOR_TOKEN: token ?? '' })
}

const list = () => agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items')

it('stops an agent after a dry run, lists it, and resumes it by scope', async () => {
  const admin = ['--admin', fx.corridor.adminUrl]
  expect((await cli(undefined, 'stop', '--agent', 'writer', '--reason', 'x', ...admin)).code).toBe(2)
  expect((await cli(OPERATOR_KEY, 'stop', '--agent', 'writer', ...admin)).code).toBe(2) // no reason
  expect((await cli(OPERATOR_KEY, 'stop', '--agent', 'writer', '--global', '--reason', 'x', ...admin)).code).toBe(2)

  const dry = await cli(OPERATOR_KEY, 'stop', '--agent', 'writer', '--reason', 'INC-9', '--dry-run', ...admin)
  expect(dry.code).toBe(0)
  expect(dry.stdout).toContain('dry run: stopping agent:writer (stop) would affect 1 agent(s)')
  expect((await list()).status).toBe(200)

  const stopped = await cli(
    OPERATOR_KEY,
    'stop',
    '--agent',
    'writer',
    '--mode',
    'read-only',
    '--for',
    '2h',
    '--reason',
    'INC-9',
    ...admin,
  )
  expect(stopped.code).toBe(0)
  expect(stopped.stdout).toMatch(/stp_\S+\s+agent:writer\s+read_only/)
  expect((await list()).status).toBe(200) // read-only: reads pass
  expect((await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', { body: { qty: 1 } })).status).toBe(403)

  const stops = await cli(OPERATOR_KEY, 'stops', ...admin)
  expect(stops.stdout).toContain('reason: INC-9')
  expect(stops.stdout).toContain('by oncall until')
  expect(stops.stderr).toContain('1 stop(s) in force')

  expect((await cli(OPERATOR_KEY, 'resume', '--agent', 'other', '--reason', 'x', ...admin)).code).toBe(1)
  const resumed = await cli(OPERATOR_KEY, 'resume', '--agent', 'writer', '--reason', 'INC-9 closed', ...admin)
  expect(resumed.code).toBe(0)
  expect((await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items', { body: { qty: 1 } })).status).toBe(200)
  expect((await cli(OPERATOR_KEY, 'stops', ...admin)).stderr).toContain('0 stop(s) in force')
})

it('an unknown id or an approver key is refused; keys mint makes operator keys', async () => {
  const admin = ['--admin', fx.corridor.adminUrl]
  const unknown = await cli(OPERATOR_KEY, 'resume', 'stp_0000', '--reason', 'x', ...admin)
  expect([unknown.code, unknown.stderr]).toEqual([1, expect.stringContaining('404 stop_not_found')])
  const approver = await cli('cap_test_alice_key_0001', 'stops', ...admin)
  expect([approver.code, approver.stderr]).toEqual([1, expect.stringContaining('401 operator_unauthenticated')])
  const minted = await cli(undefined, 'keys', 'mint', '--operator', 'sam')
  expect(minted.stdout).toMatch(/^cop_[A-Za-z0-9_-]{43}\n {6}- \{ hash: "sha256:[0-9a-f]{64}"/)
  expect(minted.stderr).toContain('CORRIDOR_OPERATOR_TOKEN')
})
