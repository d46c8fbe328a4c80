/**
 * Every act is in the audit trail before it is taken. The upstream here reads the audit file at
 * the moment a request reaches it and looks for that request's intent entry; on a disk that
 * fills up (a real file-size limit on a real Corridor process), nothing is forwarded whose intent
 * entry could not be written.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { queryAudit } from '../../src/audit/query.ts'
import type { AuditRecord } from '../../src/audit/record.ts'
import { WRITER_KEY, agentCall, approvalFiles, approve } from '../helpers/approvals-fixture.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { hash } from '../helpers/standard-policy.ts'

interface IntentLine {
  type: 'intent'
  request_id: string
  act: string
  approval_id: string | null
  path: string
  query: string
  credential: { reference: string } | null
}

function intentsIn(file: string): IntentLine[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  const out: IntentLine[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('{"type":"intent"')) continue
    try {
      out.push(JSON.parse(line) as IntentLine)
    } catch {
      // a line cut short by the file-size limit: not an intent that was written
    }
  }
  return out
}

/** An upstream that, for each request carrying ?n=<nonce>, notes whether the trail already held its intent. */
function intentCheckingUpstream(auditFile: () => string) {
  const seen: { nonce: string; intentBefore: boolean }[] = []
  return {
    seen,
    start: () =>
      startRecordingUpstream((req, res) => {
        const nonce = new URL(req.url, 'http://x').searchParams.get('n')
        if (nonce !== null) {
          const intentBefore = intentsIn(auditFile()).some((i) => i.query.includes(`n=${nonce}`))
          seen.push({ nonce, intentBefore })
        }
        res.writeHead(201, { 'content-type': 'application/json' })
        res.end('{"ok":true}')
      }),
  }
}

describe('intent entries', () => {
  let fx: CorridorFixture
  let upstream: RecordingUpstream
  const checker = intentCheckingUpstream(() => fx.auditFile)

  beforeAll(async () => {
    upstream = await checker.start()
    fx = await startCorridorFixture(approvalFiles(upstream.url, 'approvals: { wait: 0s }\n'), { SVC_TOKEN: 'tok-1' })
  })
  afterAll(async () => {
    await fx.close()
    await upstream.close()
  })

  it('are written before a forward, a hold and a release, and one logical record per request is queried', async () => {
    const small = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items?n=forward1', { body: { qty: 1 } })
    expect(small.status).toBe(201)
    const big = await agentCall(fx.corridor.agentUrl, WRITER_KEY, '/svc/items?n=release1', { body: { qty: 50 } })
    expect(big.body.code).toBe('approval_pending')
    const approvalId = big.body.approval_id as string
    expect((await approve(fx.corridor.adminUrl, 'alice', approvalId)).status).toBe(200)
    await eventually(() => expect(checker.seen.map((s) => s.nonce)).toContain('release1'), 5_000)
    expect(checker.seen).toEqual([
      { nonce: 'forward1', intentBefore: true },
      { nonce: 'release1', intentBefore: true },
    ])

    const intents = intentsIn(fx.auditFile)
    expect(intents.find((i) => i.query === 'n=forward1')).toMatchObject({
      act: 'forward',
      credential: { reference: expect.any(String) as string },
    })
    expect(intents.filter((i) => i.approval_id === approvalId).map((i) => i.act)).toEqual(['hold', 'release'])
    expect(readFileSync(fx.auditFile, 'utf8')).not.toContain('tok-1')

    // The query folds each intent into the record that follows it: one record per request.
    await eventually(() => expect(fx.auditRecords().filter((r) => r.approval?.id === approvalId)).toHaveLength(2))
    const records: AuditRecord[] = []
    await queryAudit(fx.auditFile, {}, (r) => records.push(r))
    const ids = records.map((r) => r.request_id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(records.every((r) => (r as { type?: string }).type === 'request')).toBe(true)
    expect(records.some((r) => r.outcome === 'incomplete')).toBe(false)
  })

  it('an intent with no record after it (Corridor stopped mid-action) is queried as incomplete', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-intent-'))
    const file = join(dir, 'audit.log')
    const done = intentsIn(fx.auditFile).find((i) => i.query === 'n=forward1') as IntentLine
    const cut = { ...done, request_id: 'cut-1', query: 'n=cut' }
    writeFileSync(file, readFileSync(fx.auditFile, 'utf8') + JSON.stringify(cut) + '\n')
    const records: AuditRecord[] = []
    await queryAudit(file, { outcome: 'incomplete' }, (r) => records.push(r))
    expect(records).toEqual([
      expect.objectContaining({ request_id: 'cut-1', outcome: 'incomplete', query: 'n=cut', connector: 'svc' }),
    ])
  })
})

/** Corridor as a child process whose file writes stop at `maxBytes` (the kernel's file-size limit): a disk that fills up. */
async function startOnSmallDisk(
  upstreamUrl: string,
  maxBytes: number,
  agentsExtra = '',
): Promise<{ dir: string; agentUrl: string; adminUrl: string; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-full-'))
  const files = approvalFiles(upstreamUrl)
  writeFileSync(join(dir, 'agents.yaml'), files.agents + agentsExtra)
  for (const name of ['connectors', 'policy'] as const) writeFileSync(join(dir, `${name}.yaml`), files[name])
  writeFileSync(
    join(dir, 'corridor.yaml'),
    'listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n' +
      'files: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n',
  )
  const child = spawn(
    'prlimit',
    [
      `--fsize=${maxBytes}`,
      process.execPath,
      resolve('bin/corridor.js'),
      'serve',
      '--config',
      join(dir, 'corridor.yaml'),
    ],
    {
      env: { ...process.env, SVC_TOKEN: 'tok-full', CORRIDOR_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const urls = { agentUrl: '', adminUrl: '' }
  try {
    await eventually(() => {
      const agent = /"agentUrl":"([^"]+)"/.exec(stderr)
      const admin = /"adminUrl":"([^"]+)"/.exec(stderr)
      expect(agent).not.toBeNull()
      expect(admin).not.toBeNull()
      urls.agentUrl = (agent as RegExpExecArray)[1] as string
      urls.adminUrl = (admin as RegExpExecArray)[1] as string
    }, 15_000)
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  return { dir, ...urls, stop: () => child.kill('SIGKILL') }
}

/** Writes until the audit file is full: the status of each call, and how many were refused in a row at the end. */
async function fillTheDisk(agentUrl: string): Promise<number[]> {
  const outcomes: number[] = []
  let refusedInARow = 0
  for (let i = 0; i < 2_000 && refusedInARow < 5; i++) {
    const res = await request(`${agentUrl}/svc/items?n=full${i}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITER_KEY}`, 'content-type': 'application/json' },
      body: '{"qty":1}',
    })
    const body = (await res.body.json()) as { code?: string }
    outcomes.push(res.statusCode)
    if (res.statusCode === 503) {
      expect(body.code).toBe('audit_unavailable')
      refusedInARow++
    } else {
      expect(res.statusCode).toBe(201)
      refusedInARow = 0
    }
  }
  return outcomes
}

describe('a disk that fills up', () => {
  it('forwards nothing whose intent entry could not be written', { timeout: 60_000 }, async () => {
    let auditFile = ''
    const checker = intentCheckingUpstream(() => auditFile)
    const upstream = await checker.start()
    // The kernel refuses writes past 40 KiB to any file this process writes: the audit file fills up.
    const corridor = await startOnSmallDisk(upstream.url, 40 * 1024)
    auditFile = join(corridor.dir, 'audit.log')
    try {
      const outcomes = await fillTheDisk(corridor.agentUrl)
      const forwarded = outcomes.filter((s) => s === 201).length
      const refused = outcomes.filter((s) => s === 503).length
      console.log(`full disk: ${forwarded} forwarded, ${refused} refused, ${checker.seen.length} reached the upstream`)
      expect(forwarded).toBeGreaterThan(10)
      expect(refused).toBe(5)
      expect(checker.seen).toHaveLength(forwarded)
      expect(checker.seen.filter((s) => !s.intentBefore)).toEqual([])
    } finally {
      corridor.stop()
      await upstream.close()
    }
  })

  it('keeps a stop in force when its resume cannot be written down', { timeout: 60_000 }, async () => {
    let auditFile = ''
    const upstream = await intentCheckingUpstream(() => auditFile).start()
    const operatorKey = 'cop_test_full_disk_operator_0001'
    const corridor = await startOnSmallDisk(
      upstream.url,
      40 * 1024,
      `operators:\n  - { id: oncall, keys: [{ hash: "${hash(operatorKey)}" }] }\n`,
    )
    auditFile = join(corridor.dir, 'audit.log')
    const operator = (path: string, body?: unknown) =>
      request(`${corridor.adminUrl}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${operatorKey}`, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
      }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> }))
    try {
      // A stop on another agent, so that the writer can fill the disk.
      const stopped = await operator('/stops', { scope: { agent: 'admin-bot' }, reason: 'incident INC-9' })
      expect(stopped.status).toBe(201)
      const id = (stopped.body.stop as { id: string }).id
      await fillTheDisk(corridor.agentUrl)
      const resumed = await operator(`/stops/${id}/resume`, { reason: 'fixed' })
      expect(resumed).toMatchObject({ status: 503, body: { code: 'audit_unavailable' } })
      const listed = await operator('/stops')
      expect((listed.body.stops as { id: string }[]).map((s) => s.id)).toEqual([id])
    } finally {
      corridor.stop()
      await upstream.close()
    }
  })
})
