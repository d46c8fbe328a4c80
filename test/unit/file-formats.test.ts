/**
 * The file formats are declared once and read three ways: by the loaders, by the JSON Schemas
 * editors use, and by the reader of the documentation. This keeps the three in step: the
 * published schemas are the generated ones, every shipped file and every documented snippet gets
 * the same verdict from the JSON Schema (checked by Ajv, an independent validator) and from the
 * loader, and broken files are refused by both, the loader saying where.
 */
import { Ajv, type ValidateFunction } from 'ajv'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { FILE_FORMATS, FORMAT_NAMES, jsonSchemaText, type FileFormat } from '../../src/cli/file-formats.ts'
import { runPolicyTests } from '../../src/cli/commands/policy-test.ts'
import { loadServerConfig } from '../../src/config/server-config.ts'
import { ConfigError, YamlReader, formatIssue } from '../../src/config/yaml-reader.ts'
import { loadBundle } from '../../src/policy/bundle.ts'

const ajv = new Ajv({ allErrors: true, strict: true })
const validators = new Map<FileFormat, ValidateFunction>(
  FORMAT_NAMES.map((f) => [f, ajv.compile(JSON.parse(readFileSync(`docs/schemas/${f}.schema.json`, 'utf8')))]),
)

function verdicts(format: FileFormat, text: string): { schema: boolean; loader: boolean; issues: string[] } {
  const validate = validators.get(format) as ValidateFunction
  const reader = new YamlReader(`${format}.yaml`, text)
  const loaded = reader.parse(FILE_FORMATS[format], format)
  return {
    schema: validate(parse(text)),
    loader: loaded !== null,
    issues: reader.issues.map(formatIssue),
  }
}

const SHIPPED: readonly [string, FileFormat][] = [
  ['policies/corridor.yaml', 'corridor'],
  ['policies/agents.yaml', 'agents'],
  ['policies/connectors.yaml', 'connectors'],
  ['policies/policy.yaml', 'policy'],
  ['policies/policy.test.yaml', 'policy-test'],
]

describe('published JSON Schemas', () => {
  it.each(FORMAT_NAMES)(
    'docs/schemas/%s.schema.json is the one generated from the loader (npm run docs:schemas)',
    (f) => {
      expect(readFileSync(`docs/schemas/${f}.schema.json`, 'utf8')).toBe(jsonSchemaText(f))
    },
  )

  it.each(SHIPPED)('%s names its schema, and schema and loader accept it', (file, format) => {
    const text = readFileSync(file, 'utf8')
    expect(text.split('\n')[0]).toBe(`# yaml-language-server: $schema=../docs/schemas/${format}.schema.json`)
    expect(verdicts(format, text)).toEqual({ schema: true, loader: true, issues: [] })
  })

  it('the shipped files load as a whole, meaning included', async () => {
    const config = loadServerConfig('policies/corridor.yaml')
    const bundle = loadBundle(config.files)
    expect((await runPolicyTests(bundle, 'policies/policy.test.yaml')).every((r) => r.passed)).toBe(true)
  })
})

/** The file a documented snippet belongs to, from its top-level keys. */
function formatOf(doc: Record<string, unknown>): FileFormat {
  if ('agents' in doc || 'approvers' in doc || 'operators' in doc) return 'agents'
  if ('connectors' in doc || 'actions' in doc) return 'connectors'
  if ('rules' in doc || Array.isArray(doc['limits'])) return 'policy'
  if ('tests' in doc) return 'policy-test'
  return 'corridor'
}

/**
 * Snippets show one part of a file; the keys they leave out ("…owner, certified_until, actions as
 * usual") are added, never overridden, and placeholder hashes get a well-formed value.
 */
function completed(format: FileFormat, doc: Record<string, unknown>): Record<string, unknown> {
  const connectorDefaults = { id: 'doc', owner: 'docs', upstream: 'https://example.com', certified_until: '2030-01-01' }
  switch (format) {
    case 'corridor':
      return { files: { agents: 'a.yaml', connectors: 'c.yaml', policy: 'p.yaml' }, audit: { file: 'a.log' }, ...doc }
    case 'agents':
      return { agents: [], ...doc }
    case 'policy':
      return { version: 1, rules: [], ...doc }
    case 'connectors':
      if ('actions' in doc) return { connectors: [{ ...connectorDefaults, ...doc }] }
      return {
        connectors: (doc['connectors'] as Record<string, unknown>[]).map((c) => ({
          actions: [],
          ...connectorDefaults,
          ...c,
        })),
      }
    default:
      return doc
  }
}

function documentedSnippets(): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = []
  for (const file of ['README.md', 'docs/policy-reference.md']) {
    const lines = readFileSync(file, 'utf8').split('\n')
    for (let i = 0; i < lines.length; i++) {
      if (lines[i] !== '```yaml') continue
      const end = lines.indexOf('```', i + 1)
      const text = lines.slice(i + 1, end).join('\n')
      // A block of comments only (the modeline shown alone) has no content to check.
      if (parse(text) !== null) out.push({ where: `${file}:${i + 2}`, text })
      i = end
    }
  }
  return out
}

describe('documented snippets', () => {
  const snippets = documentedSnippets()
  it('are found', () => {
    expect(snippets.length).toBeGreaterThanOrEqual(10)
  })
  it.each(snippets)('$where: schema and loader accept it', ({ text }) => {
    const doc = parse(text.replaceAll(/sha256:(…|<64 hex>)/g, `sha256:${'a'.repeat(64)}`)) as Record<string, unknown>
    const format = formatOf(doc)
    const result = verdicts(format, JSON.stringify(completed(format, doc)))
    expect(result).toEqual({ schema: true, loader: true, issues: [] })
  })
})

describe('broken files: both refuse, and the loader says where', () => {
  const cases: readonly { name: string; format: FileFormat; text: string; issue: RegExp }[] = [
    {
      name: 'a port that is not a whole number',
      format: 'corridor',
      text: 'listen: { port: 70000.5 }\nfiles: { agents: a, connectors: c, policy: p }\naudit: { file: a.log }\n',
      issue: /^corridor\.yaml:1:17: listen\.port must be a whole number from 0 to 65535$/,
    },
    {
      name: 'a number where text is meant',
      format: 'agents',
      text: 'agents:\n  - id: bot\n    owner: 42\n    tier: read-only\n    connectors: [x]\n',
      issue: /^agents\.yaml:3:12: agents\[0\]\.owner must be text; quote it \("42"\)/,
    },
    {
      name: 'an unknown key',
      format: 'policy',
      text: 'version: 1\nrules:\n  - id: a\n    effect: allow\n    efect: deny\n',
      issue: /^policy\.yaml:5:5: rules\[0\]: unknown key 'efect' \(expected one of: id, description, effect/,
    },
    {
      name: 'a missing required key',
      format: 'connectors',
      text: 'connectors:\n  - id: x\n    owner: o\n    upstream: https://x\n    actions: []\n',
      issue: /^connectors\.yaml:2:5: connectors\[0\]: missing required key 'certified_until'$/,
    },
    {
      name: 'a value outside its set',
      format: 'connectors',
      text:
        'connectors:\n  - id: x\n    owner: o\n    upstream: https://x\n    certified_until: 2030-01-01\n' +
        '    actions: [{ name: a, method: FETCH, path: /a, risk: read }]\n',
      issue: /^connectors\.yaml:6:34: connectors\[0\]\.actions\[0\]\.method must be one of: GET, HEAD, POST/,
    },
    {
      name: 'a credential key another source takes',
      format: 'connectors',
      text:
        'connectors:\n  - id: x\n    owner: o\n    upstream: https://x\n    certified_until: 2030-01-01\n    actions: []\n' +
        '    credential: { source: env, env: T, path: kv/x, inject: { header: authorization } }\n',
      issue: /^connectors\.yaml:7:40: connectors\[0\]\.credential: unknown key 'path'/,
    },
    {
      name: 'approvals out of range',
      format: 'policy',
      text: 'version: 1\nrules:\n  - { id: a, effect: require_approval, approvers: [x], approvals: 9 }\n',
      issue: /^policy\.yaml:3:67: rules\[0\]\.approvals must be a whole number from 1 to 5$/,
    },
    {
      name: 'a test case expecting an unknown effect',
      format: 'policy-test',
      text: 'tests:\n  - name: t\n    request: { agent: a, url: /x }\n    expect: { effect: permit }\n',
      issue: /^policy-test\.yaml:4:23: tests\[0\]\.expect\.effect must be one of: allow, deny, require_approval/,
    },
  ]
  it.each(cases)('$name', ({ format, text, issue }) => {
    const result = verdicts(format, text)
    expect(result.schema).toBe(false)
    expect(result.loader).toBe(false)
    expect(result.issues).toEqual(expect.arrayContaining([expect.stringMatching(issue)]))
  })

  it('an agent granted an unknown connector is reported at that grant', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-formats-'))
    writeFileSync(
      join(dir, 'agents.yaml'),
      'agents:\n  - id: bot\n    owner: o\n    tier: read-only\n    connectors:\n      - records\n      - nowhere\n',
    )
    writeFileSync(
      join(dir, 'connectors.yaml'),
      'connectors:\n  - { id: records, owner: o, upstream: "https://r", certified_until: 2030-01-01, actions: [] }\n',
    )
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\nrules: []\n')
    let error: unknown
    try {
      loadBundle({
        agents: join(dir, 'agents.yaml'),
        connectors: join(dir, 'connectors.yaml'),
        policy: join(dir, 'policy.yaml'),
      })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).issues.map((i) => `${i.line}:${i.col} ${i.message}`)).toEqual([
      "7:9 agent 'bot' is granted unknown connector 'nowhere'",
    ])
  })

  it('a test suite is checked before it runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-formats-'))
    const suite = join(dir, 'bad.test.yaml')
    writeFileSync(
      suite,
      'tests:\n  - name: t\n    request: { agent: support-bot, url: /x, methd: POST }\n    expect: {}\n',
    )
    const bundle = loadBundle(loadServerConfig('policies/corridor.yaml').files)
    await expect(runPolicyTests(bundle, suite)).rejects.toThrow(
      /bad\.test\.yaml:3:45: tests\[0\]\.request: unknown key 'methd'[\s\S]*bad\.test\.yaml:4:13: tests\[0\]\.expect needs either effect or refused/,
    )
  })
})
