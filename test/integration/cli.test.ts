import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashApiKey } from '../../src/registry/agents.ts'

const corridor = (...args: string[]) =>
  spawnSync(process.execPath, ['bin/corridor.js', ...args], { encoding: 'utf8', timeout: 15_000 })

describe('corridor CLI', () => {
  it('checks the shipped policy', () => {
    const r = corridor('policy', 'check')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/^policy ok: sha256:[0-9a-f]{16}/)
  })

  it('runs the shipped policy test suite and fails on a wrong expectation', () => {
    const ok = corridor('policy', 'test', 'policies/policy.test.yaml')
    expect(ok.status).toBe(0)
    expect(ok.stdout).toMatch(/20 passed, 0 failed/)
    const dir = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    writeFileSync(
      join(dir, 'wrong.yaml'),
      'tests:\n  - name: wrong\n    request: { agent: support-bot, method: DELETE, url: /records/customers/c-1 }\n    expect: { effect: allow }\n',
    )
    const bad = corridor('policy', 'test', join(dir, 'wrong.yaml'))
    expect(bad.status).toBe(1)
    expect(bad.stdout).toContain('effect: expected "allow", got "deny"')
  })

  it('prints the JSON Schema of each file format, and refuses a format it does not have', () => {
    const r = corridor('schema', 'connectors')
    expect(r.status).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(readFileSync('docs/schemas/connectors.schema.json', 'utf8')))
    const unknown = corridor('schema', 'connector')
    expect(unknown.status).toBe(2)
    expect(unknown.stderr).toContain("unknown format 'connector'")
  })

  it('explains which rule decides and why', () => {
    const r = corridor(
      'policy',
      'explain',
      '--agent',
      'release-bot',
      '--method',
      'POST',
      '--url',
      '/github/repos/other/app/issues',
      '--body',
      '{"title":"x"}',
    )
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('rule github-issues-write')
    expect(r.stdout).toContain('not matched: params.owner equals "acme"')
    expect(r.stdout).toContain('decision: deny (limiting factor: policy_default)')
  })

  it('reports a broken policy with file:line:column and exits non-zero', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    for (const f of ['agents.yaml', 'connectors.yaml'])
      writeFileSync(join(dir, f), readFileSync(join('policies', f), 'utf8'))
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nrules:\n  - id: x\n    effect: alow\n')
    writeFileSync(
      join(dir, 'corridor.yaml'),
      'files: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n',
    )
    const r = corridor('policy', 'check', '--config', join(dir, 'corridor.yaml'))
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/policy\.yaml:4:13: rules\[0\]\.effect must be one of: allow, deny, require_approval/)
    // `serve` refuses to start on it, with the same positioned message.
    const serve = corridor('serve', '--config', join(dir, 'corridor.yaml'))
    expect(serve.status).toBe(1)
    expect(serve.stderr).toMatch(/policy\.yaml:4:13: rules\[0\]\.effect must be one of/)
  })

  it('checks exactly the policy directory it is given, and refuses arguments it does not take', () => {
    const good = corridor('policy', 'check', 'policies/')
    expect(good.status).toBe(0)
    expect(good.stdout).toContain(`read ${join(process.cwd(), 'policies', 'agents.yaml')}`)
    // A directory holding a broken policy (no corridor.yaml in it) fails with the position, whatever the default files say.
    const dir = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    for (const f of ['agents.yaml', 'connectors.yaml'])
      writeFileSync(join(dir, f), readFileSync(join('policies', f), 'utf8'))
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nrules:\n  - id: x\n    effect: alow\n')
    const broken = corridor('policy', 'check', dir)
    expect(broken.status).toBe(1)
    expect(broken.stderr).toMatch(/policy\.yaml:4:13: rules\[0\]\.effect must be one of/)
    // A path that holds no policy is an error, never a fallback to the default files.
    const empty = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    const none = corridor('policy', 'check', empty)
    expect(none.status).toBe(1)
    expect(none.stderr).toContain('policy.yaml:1:1: missing')
    expect(corridor('policy', 'check', join(empty, 'nope')).status).toBe(1)
    // Unknown options and extra arguments are usage errors (exit 2), not silently ignored.
    const unknown = corridor('policy', 'check', '--strict-mode')
    expect(unknown.status).toBe(2)
    expect(unknown.stderr).toContain('usage: corridor policy check')
    expect(corridor('policy', 'check', 'policies/', 'other/').status).toBe(2)
    expect(corridor('keys', 'mint', '--agent', 'x', 'extra').status).toBe(2)
    expect(corridor('policy', 'frobnicate').status).toBe(2)
  })

  it('policy test with no suite runs the *.test.yaml files beside the policy, and refuses to pass on none', () => {
    const found = corridor('policy', 'test')
    expect(found.status).toBe(0)
    expect(found.stdout).toMatch(/20 passed, 0 failed/)
    const empty = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    const none = corridor('policy', 'test', empty)
    expect(none.status).toBe(2)
    expect(none.stderr).toContain('no *.test.yaml')
  })

  it('reports config mistakes the readers used to let through, each at its position', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-cli-'))
    const agents = readFileSync(join('policies', 'agents.yaml'), 'utf8')
      .replace('connectors: [records, ticketing]', 'connectors: [records, ticketin]')
      .replace('owner: platform-team', 'owner: 42')
    writeFileSync(join(dir, 'agents.yaml'), agents)
    writeFileSync(join(dir, 'connectors.yaml'), readFileSync(join('policies', 'connectors.yaml'), 'utf8'))
    writeFileSync(join(dir, 'policy.yaml'), readFileSync(join('policies', 'policy.yaml'), 'utf8'))
    writeFileSync(
      join(dir, 'corridor.yaml'),
      'listen: { host: 127.0.0.1, port: 70000.5 }\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n',
    )
    const r = corridor('policy', 'check', dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/corridor\.yaml:1:\d+: listen\.port must be a whole number from 0 to 65535/)
    // Fix the port: the agents file's problems are reported at their own lines, not at 1:1.
    writeFileSync(
      join(dir, 'corridor.yaml'),
      'files: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\naudit: { file: audit.log }\n',
    )
    const lines = agents.split('\n')
    const grantLine = lines.findIndex((l) => l.includes('ticketin]')) + 1
    const ownerLine = lines.findIndex((l) => l.includes('owner: 42')) + 1
    const again = corridor('policy', 'check', dir)
    expect(again.status).toBe(1)
    expect(again.stderr).toContain(`agents.yaml:${grantLine}:`)
    expect(again.stderr).toContain("granted unknown connector 'ticketin'")
    expect(again.stderr).toMatch(new RegExp(`agents\\.yaml:${ownerLine}:\\d+: agents\\[\\d\\]\\.owner must be text`))
    // A test case with a misspelt request field fails with its position instead of running as something else.
    writeFileSync(
      join(dir, 'bad.test.yaml'),
      'tests:\n  - name: typo\n    request: { agent: support-bot, url: /records/customers, methd: DELETE }\n    expect: { effect: allow }\n',
    )
    const suite = corridor('policy', 'test', join(dir, 'bad.test.yaml'))
    expect(suite.status).toBe(1)
    expect(suite.stderr).toMatch(/bad\.test\.yaml:3:\d+: .*methd/)
  })

  it('mints a key whose printed hash matches it', () => {
    const r = corridor('keys', 'mint', '--agent', 'support-bot')
    expect(r.status).toBe(0)
    const [key, line] = r.stdout.trim().split('\n')
    expect(key).toMatch(/^cor_[A-Za-z0-9_-]{43}$/)
    expect(line).toContain(`sha256:${hashApiKey(key!)}`)
  })
})
