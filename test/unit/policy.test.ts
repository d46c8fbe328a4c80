import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/config/yaml-reader.ts'
import { describedFacts, type DescribedRequest } from '../../src/policy/described-request.ts'
import { loadBundle, type PolicyBundle } from '../../src/policy/bundle.ts'
import { evaluate } from '../../src/policy/evaluate.ts'
import { standardFiles } from '../helpers/standard-policy.ts'

function bundleWith(policy?: string, connectorsTweak: (c: string) => string = (c) => c): PolicyBundle {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-policy-'))
  const files = standardFiles('http://127.0.0.1:9')
  writeFileSync(join(dir, 'agents.yaml'), files.agents)
  writeFileSync(join(dir, 'connectors.yaml'), connectorsTweak(files.connectors))
  writeFileSync(join(dir, 'policy.yaml'), policy ?? files.policy)
  return loadBundle({
    agents: join(dir, 'agents.yaml'),
    connectors: join(dir, 'connectors.yaml'),
    policy: join(dir, 'policy.yaml'),
  })
}

function compileErrors(policy: string): string[] {
  try {
    bundleWith(policy)
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.line}:${i.col} ${i.message}`)
    throw err
  }
  return []
}

const decide = (bundle: PolicyBundle, d: Partial<DescribedRequest>) =>
  evaluate(
    bundle.policy,
    bundle.version,
    describedFacts(bundle, { agent: 'writer', method: 'GET', url: '/svc/items', ...d }),
  )

describe('policy compilation reports every problem with its position', () => {
  it('rejects broken YAML', () => {
    expect(compileErrors('version: 1\nrules:\n  - id: a\n    effect: [allow\n')[0]).toMatch(/^\d+:\d+ /)
  })
  it('rejects unknown keys, actions, agents, operators and duplicate ids at once', () => {
    const errors = compileErrors(`version: 1
rules:
  - id: a
    effect: allow
    match: { actions: items.nope }
  - id: a
    effect: allow
    match: { agents: [ghost], body: { qty: { around: 3 } } }
  - id: b
    efect: allow
`)
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^5:\d+ .*'items.nope' matches no declared action/),
        expect.stringMatching(/^6:\d+ duplicate rule id 'a'/),
        expect.stringMatching(/^8:\d+ .*unknown agent 'ghost'/),
        expect.stringMatching(/^8:\d+ .*unknown operator 'around'/),
        expect.stringMatching(/^10:\d+ .*unknown key 'efect'/),
      ]),
    )
  })
  it("keeps rule ids starting with 'limit:' for holds by limits (the audit trail names those rules so)", () => {
    expect(compileErrors('version: 1\nrules:\n  - { id: "limit:refunds", effect: allow }\n')).toEqual([
      expect.stringMatching(/^3:\d+ rule ids starting with 'limit:' are reserved for holds by limits/),
    ])
  })
  it('requires approvers on require_approval rules', () => {
    expect(compileErrors('version: 1\nrules:\n  - { id: x, effect: require_approval }\n').join()).toContain(
      "needs 'approvers'",
    )
  })
})

describe('evaluation', () => {
  const bundle = bundleWith()

  it('allows what a rule allows and names the rule', () => {
    expect(decide(bundle, {})).toMatchObject({ effect: 'allow', rule: 'read-all', limitingFactor: null })
  })
  it('denies by default and says so', () => {
    const d = decide(bundle, { method: 'POST', url: '/svc/items', body: { note: 'no qty' } })
    expect(d).toMatchObject({ effect: 'deny', rule: null, limitingFactor: 'policy_default' })
  })
  it('lets deny beat allow and require_approval beat allow', () => {
    expect(decide(bundle, { url: '/svc/items/secret' })).toMatchObject({
      effect: 'deny',
      rule: 'no-secret-items',
      limitingFactor: 'policy_rule',
    })
    expect(decide(bundle, { method: 'POST', body: { qty: 11 } })).toMatchObject({
      effect: 'require_approval',
      rule: 'create-big-approval',
      approvers: ['leads'],
    })
  })
  it('caps risk by tier whatever the rules say', () => {
    const permissive = bundleWith('version: 1\nrules:\n  - { id: all, effect: allow }\n')
    expect(decide(permissive, { agent: 'reader', method: 'POST', body: { qty: 1 } })).toMatchObject({
      effect: 'deny',
      limitingFactor: 'agent_tier',
    })
    expect(decide(permissive, { method: 'DELETE', url: '/svc/items/1' })).toMatchObject({
      effect: 'deny',
      limitingFactor: 'agent_tier',
    })
  })
  it('refuses suspended agents, undeclared actions and expired connectors, naming the factor', () => {
    expect(decide(bundle, { agent: 'retired' })).toMatchObject({ effect: 'deny', limitingFactor: 'agent_status' })
    expect(decide(bundle, { url: '/svc/unknown/thing' })).toMatchObject({
      effect: 'deny',
      limitingFactor: 'connector_scope',
    })
    const expired = bundleWith(undefined, (c) =>
      c.replace('certified_until: 2099-12-31', 'certified_until: 2020-01-01'),
    )
    const d = decide(expired, {})
    expect(d).toMatchObject({ effect: 'deny', limitingFactor: 'connector_certification' })
    expect(d.reason).toContain('certification expired on 2020-01-01')
  })
  it('intersects with the delegated user permission', () => {
    const withUsers = bundleWith(`version: 1
user_permissions:
  - { groups: [viewers], max_risk: read }
rules:
  - { id: all, effect: allow }
`)
    expect(decide(withUsers, { user: { id: 'u', groups: ['viewers'] } })).toMatchObject({ effect: 'allow' })
    expect(
      decide(withUsers, { method: 'POST', body: { qty: 1 }, user: { id: 'u', groups: ['viewers'] } }),
    ).toMatchObject({ effect: 'deny', limitingFactor: 'user_permission' })
    expect(decide(withUsers, { user: { id: 'u', groups: ['strangers'] } })).toMatchObject({
      effect: 'deny',
      limitingFactor: 'user_permission',
    })
  })
  it('matches headers, query, params, groups, time windows and numeric comparisons on text', () => {
    const b = bundleWith(`version: 1
rules:
  - id: rich
    effect: allow
    match:
      actions: items.list
      headers: { X-Team: [red, blue] }
      query: { limit: { lte: 50 }, state: { present: false } }
      user_groups: [ops]
      time: { days: [mon, tue, wed, thu, fri], hours: "09:00-17:00", timezone: Europe/Paris }
`)
    const base = {
      url: '/svc/items?limit=20',
      headers: { 'x-team': 'red' },
      user: { id: 'o', groups: ['ops'] },
      at: '2026-11-23T10:00:00Z',
    } // a Monday, 11:00 in Paris
    expect(decide(b, base)).toMatchObject({ effect: 'allow', rule: 'rich' })
    expect(decide(b, { ...base, url: '/svc/items?limit=80' }).effect).toBe('deny')
    expect(decide(b, { ...base, url: '/svc/items?limit=20&state=open' }).effect).toBe('deny')
    expect(decide(b, { ...base, headers: { 'x-team': 'green' } }).effect).toBe('deny')
    expect(decide(b, { ...base, at: '2026-11-22T10:00:00Z' }).effect).toBe('deny') // Sunday
    expect(decide(b, { ...base, at: '2026-11-23T17:30:00Z' }).effect).toBe('deny') // 18:30 in Paris
    expect(() => decide(b, { ...base, url: '/svc/items?limit=20&limit=9999' })).toThrow('several values')
  })
  it('evaluates shadow rules without effect', () => {
    const d = decide(bundle, { url: '/svc/items?limit=500' })
    expect(d).toMatchObject({ effect: 'allow', shadow: [{ rule: 'report-large-lists', effect: 'deny' }] })
  })
  it('keeps the version a hash of the files', () => {
    expect(bundle.version).toMatch(/^sha256:[0-9a-f]{16}$/)
    expect(bundleWith(standardFiles('x').policy + '\n# comment\n').version).not.toBe(bundle.version)
  })
})

describe('cost classes and limits in the policy', () => {
  const costly = (c: string) =>
    c
      .replace(
        '{ name: items.create, method: POST, path: /items, risk: write }',
        '{ name: items.create, method: POST, path: /items, risk: write, cost: high }',
      )
      .replace(
        '{ name: items.list, method: GET, path: /items, risk: read }',
        '{ name: items.list, method: GET, path: /items, risk: read, cost: low }',
      )

  it('rules match the declared cost class: one, a list, or above a class; undeclared matches none', () => {
    const bundle = bundleWith(
      `version: 1
rules:
  - { id: all, effect: allow }
  - { id: costly, effect: require_approval, approvers: [leads], match: { cost: { above: medium } } }
  - { id: cheap-or-mid, effect: deny, mode: shadow, match: { cost: [low, medium] } }
`,
      costly,
    )
    expect(
      decide(bundle, {
        method: 'POST',
        url: '/svc/items',
        body: '{"qty":1}',
        headers: [['content-type', 'application/json']],
      }).rule,
    ).toBe('costly')
    const list = decide(bundle, {})
    expect([list.effect, list.rule]).toEqual(['allow', 'all'])
    expect(list.shadow.map((s) => s.rule)).toEqual(['cheap-or-mid'])
    const undeclared = decide(bundle, { url: '/svc/items/7' })
    expect([undeclared.effect, undeclared.shadow]).toEqual(['allow', []])
  })

  it('limits: exactly one kind each, known time zones, approvers only with require_approval, sane windows', () => {
    const errors = compileErrors(`version: 1
rules:
  - { id: all, effect: allow }
limits:
  - { id: two-kinds, rate: 10/s, concurrency: 2 }
  - { id: zone, budget: { max: 10, window: 1d }, timezone: Mars/Olympus }
  - { id: lonely, identical: { max: 2, within: 1m }, on_exceed: require_approval }
  - { id: fast, rate: 10/500ms }
  - { id: bad-rate, rate: ten/s }
  - { id: rate-hold, rate: 1/s, on_exceed: require_approval, approvers: [leads] }
  - { id: zone, concurrency: 1, match: { actions: items.nope } }
`)
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^5:\d+ limits\[0\]: give exactly one of rate, budget/),
        expect.stringMatching(/^6:\d+ limits\[1\].timezone: unknown time zone 'Mars\/Olympus'/),
        expect.stringMatching(/^7:\d+ limits\[2\]: on_exceed: require_approval needs 'approvers'/),
        expect.stringMatching(/^8:\d+ limits\[3\]: windows are from 1s to 366d/),
        expect.stringMatching(/^9:\d+ limits\[4\].rate must be a rate such as 10\/s/),
        expect.stringMatching(/^10:\d+ limits\[5\]: a rate limit can only deny/),
        expect.stringMatching(/^11:\d+ duplicate limit id 'zone'/),
        expect.stringMatching(/^11:\d+ .*'items.nope' matches no declared action/),
      ]),
    )
  })
})
