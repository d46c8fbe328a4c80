/**
 * Starts a real Corridor on loopback from a temporary policy directory, with its operational
 * log captured in memory, so tests can assert on what reached the upstream, the agent, the
 * audit trail and the logs.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { loadServerConfig } from '../../src/config/server-config.ts'
import { startCorridor, type RunningCorridor, type StartOptions } from '../../src/main.ts'
import type { AuditRecord } from '../../src/audit/record.ts'
import { createLogger } from '../../src/shared/logger.ts'

export interface CorridorFixture {
  corridor: RunningCorridor
  dir: string
  auditFile: string
  logs: string[]
  auditRecords(): AuditRecord[]
  /** Everything Corridor wrote anywhere but the upstream: logs and the audit file. */
  allOutput(): string
  /** Moves this Corridor's clock forward (expiries, claim deadlines), instead of the test sleeping. */
  advanceClock(ms: number): void
  close(): Promise<void>
}

export interface FixtureFiles {
  agents: string
  connectors: string
  policy: string
  /** Extra YAML appended to corridor.yaml (identity, limits…). */
  extraConfig?: string
  /** The agent listener's line of corridor.yaml (default: loopback, any free port, plain HTTP). */
  listenConfig?: string
  /** The admin listener's line of corridor.yaml (default: loopback, any free port, plain HTTP). */
  adminConfig?: string
  /** Audit file path (default: inside the temp dir). */
  auditFile?: string
  /** More keys of corridor.yaml's audit mapping (`postgres: {…}`). */
  auditConfig?: string
  files?: Record<string, string>
}

export async function startCorridorFixture(
  files: FixtureFiles,
  env: Record<string, string> = {},
  options: Pick<StartOptions, 'resolve'> = {},
): Promise<CorridorFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-test-'))
  const auditFile = files.auditFile ?? join(dir, 'audit.log')
  writeFileSync(join(dir, 'agents.yaml'), files.agents)
  writeFileSync(join(dir, 'connectors.yaml'), files.connectors)
  writeFileSync(join(dir, 'policy.yaml'), files.policy)
  for (const [name, text] of Object.entries(files.files ?? {})) writeFileSync(join(dir, name), text)
  writeFileSync(
    join(dir, 'corridor.yaml'),
    `${files.listenConfig ?? 'listen: { host: 127.0.0.1, port: 0 }'}\n${files.adminConfig ?? 'admin: { host: 127.0.0.1, port: 0 }'}\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: ${JSON.stringify(auditFile)}${files.auditConfig === undefined ? '' : `, ${files.auditConfig}`} }\n${files.extraConfig ?? ''}`,
  )
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString('utf8'))
      cb()
    },
  })
  let clockOffsetMs = 0
  const corridor = await startCorridor(loadServerConfig(join(dir, 'corridor.yaml')), {
    env,
    log: createLogger('debug', sink),
    now: () => Date.now() + clockOffsetMs,
    ...options,
  })
  const readAudit = (): string => {
    try {
      return readFileSync(auditFile, 'utf8')
    } catch {
      return ''
    }
  }
  return {
    corridor,
    dir,
    auditFile,
    logs,
    auditRecords: () =>
      readAudit()
        .split('\n')
        .filter((l) => l.startsWith('{"type":"request"'))
        .map((l) => JSON.parse(l) as AuditRecord),
    allOutput: () => logs.join('') + readAudit(),
    advanceClock: (ms) => {
      clockOffsetMs += ms
    },
    close: () => corridor.close(),
  }
}

/**
 * Waits until `check` passes or the deadline is reached (for records written at response close).
 * The deadline only bounds a failure: on two busy cores a record can take well over a second.
 */
export async function eventually(check: () => void | Promise<void>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      await check()
      return
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 10))
    }
  }
}
