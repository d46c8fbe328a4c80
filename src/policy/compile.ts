/**
 * policy.yaml → CompiledPolicy. Compilation checks every rule against the agent registry and
 * the connector catalog (an unknown agent, connector or action is an error with its position),
 * then indexes rules by (connector, action, agent) so that evaluating a request touches only
 * the rules that could apply to it, however long the policy grows.
 */
import type { Node } from 'yaml'
import type { YamlReader } from '../config/yaml-reader.ts'
import type { AgentRegistry } from '../registry/agents.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import { RISKS, TIERS, type Risk } from '../registry/risk.ts'
import { readPath, type FieldRead } from '../request/fields.ts'
import { compileCondition, fieldPath, type CompiledCondition } from './conditions.ts'
import type { Effect } from './decision.ts'
import type { RequestFacts } from './facts.ts'

export interface RuleCheck {
  readonly describe: string
  readonly test: (facts: RequestFacts) => boolean
}

export interface CompiledRule {
  readonly id: string
  readonly effect: Effect
  readonly shadow: boolean
  readonly reason: string
  readonly approvers: readonly string[]
  /** Distinct approvals a require_approval rule needs (privileged actions need at least two whatever this says). */
  readonly approvals: number
  readonly line: number
  /** Agent ids the rule is limited to, or null for any agent (used for indexing). */
  readonly agents: ReadonlySet<string> | null
  readonly checks: readonly RuleCheck[]
}

export interface RuleBucket {
  /** Enforced rules for agents not named by any rule in this bucket, in file order. */
  readonly generic: readonly CompiledRule[]
  /** Enforced rules for each agent named in this bucket (its own rules merged with the generic ones, in file order). */
  readonly byAgent: ReadonlyMap<string, readonly CompiledRule[]>
  readonly shadow: readonly CompiledRule[]
  /** Whether any rule here reads the body (a body Corridor cannot parse is then refused). */
  readonly readsBody: boolean
}

export interface UserPermission {
  readonly groups: ReadonlySet<string>
  readonly connectors: ReadonlySet<string> | null
  readonly actions: RegExp | null
  readonly maxRisk: Risk
}

export interface CompiledPolicy {
  readonly rules: readonly CompiledRule[]
  /** connector id → action name → bucket. */
  readonly buckets: ReadonlyMap<string, ReadonlyMap<string, RuleBucket>>
  /** null when the policy declares no user permissions (a delegated user then adds no limit of its own). */
  readonly userPermissions: readonly UserPermission[] | null
}

const EMPTY_BUCKET: RuleBucket = { generic: [], byAgent: new Map(), shadow: [], readsBody: false }
export function bucketFor(policy: CompiledPolicy, connector: string, action: string): RuleBucket {
  return policy.buckets.get(connector)?.get(action) ?? EMPTY_BUCKET
}

/** Action-name globs: `*` matches any run of characters, everything else is literal. */
export function globToRegExp(globs: readonly string[]): RegExp {
  const parts = globs.map((g) =>
    g
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*'),
  )
  return new RegExp(`^(?:${parts.join('|')})$`)
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const
const ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/

interface RuleDraft {
  rule: CompiledRule
  connectors: ReadonlySet<string> | null
  actions: RegExp | null
  readsBody: boolean
}

export function compilePolicy(r: YamlReader, registry: AgentRegistry, catalog: ConnectorCatalog): CompiledPolicy {
  const top = r.map(r.root, 'policy file', ['version', 'rules', 'user_permissions'], ['version', 'rules'])
  if (top.has('version') && r.value(top.get('version')) !== 1) r.issue(top.get('version'), `version must be 1`)

  const drafts: RuleDraft[] = []
  const ids = new Set<string>()
  r.list(top.get('rules'), 'rules').forEach((node, i) => {
    const draft = compileRule(r, node, `rules[${i}]`, registry, catalog)
    if (!draft) return
    if (ids.has(draft.rule.id)) r.issue(node, `duplicate rule id '${draft.rule.id}'`)
    ids.add(draft.rule.id)
    drafts.push(draft)
  })

  const userPermissions = top.has('user_permissions')
    ? r
        .list(top.get('user_permissions'), 'user_permissions')
        .map((node, i) => compileUserPermission(r, node, `user_permissions[${i}]`, catalog))
    : null

  return { rules: drafts.map((d) => d.rule), buckets: indexRules(drafts, catalog), userPermissions }
}

function indexRules(drafts: readonly RuleDraft[], catalog: ConnectorCatalog): Map<string, Map<string, RuleBucket>> {
  const buckets = new Map<string, Map<string, RuleBucket>>()
  for (const connector of catalog.connectors.values()) {
    const byAction = new Map<string, RuleBucket>()
    for (const action of connector.actions) {
      const applicable = drafts.filter(
        (d) =>
          (d.connectors === null || d.connectors.has(connector.id)) &&
          (d.actions === null || d.actions.test(action.name)),
      )
      if (applicable.length === 0) continue
      const enforced = applicable.filter((d) => !d.rule.shadow).map((d) => d.rule)
      const named = new Set<string>()
      for (const rule of enforced) for (const agent of rule.agents ?? []) named.add(agent)
      const byAgent = new Map<string, CompiledRule[]>()
      for (const agent of named)
        byAgent.set(
          agent,
          enforced.filter((rule) => rule.agents === null || rule.agents.has(agent)),
        )
      byAction.set(action.name, {
        generic: enforced.filter((rule) => rule.agents === null),
        byAgent,
        shadow: applicable.filter((d) => d.rule.shadow).map((d) => d.rule),
        readsBody: applicable.some((d) => d.readsBody),
      })
    }
    buckets.set(connector.id, byAction)
  }
  return buckets
}

function compileRule(
  r: YamlReader,
  node: Node,
  where: string,
  registry: AgentRegistry,
  catalog: ConnectorCatalog,
): RuleDraft | null {
  const f = r.map(
    node,
    where,
    ['id', 'description', 'effect', 'mode', 'reason', 'approvers', 'approvals', 'match'],
    ['id', 'effect'],
  )
  const id = r.string(f.get('id'), `${where}.id`)
  if (id && !ID.test(id)) r.issue(f.get('id'), `${where}.id may contain letters, digits, '_', '.', ':' and '-'`)
  const effect = r.oneOf(f.get('effect'), `${where}.effect`, ['allow', 'deny', 'require_approval'] as const)
  const mode = f.has('mode') ? r.oneOf(f.get('mode'), `${where}.mode`, ['enforce', 'shadow'] as const) : 'enforce'
  const approvers = f.has('approvers') ? r.strings(f.get('approvers'), `${where}.approvers`) : []
  if (effect === 'require_approval' && approvers.length === 0)
    r.issue(node, `${where}: require_approval needs 'approvers' (the approver groups)`)
  if (effect !== 'require_approval' && f.has('approvers'))
    r.issue(f.get('approvers'), `${where}: 'approvers' applies only to require_approval`)
  const approvals = f.has('approvals') ? r.number(f.get('approvals'), `${where}.approvals`) : 1
  if (
    f.has('approvals') &&
    (effect !== 'require_approval' || !Number.isInteger(approvals) || approvals < 1 || approvals > 5)
  ) {
    r.issue(
      f.get('approvals'),
      `${where}.approvals applies only to require_approval and must be a whole number from 1 to 5`,
    )
  }

  const checks: RuleCheck[] = []
  let agents: ReadonlySet<string> | null = null
  let connectors: ReadonlySet<string> | null = null
  let actions: RegExp | null = null
  let readsBody = false

  if (f.has('match')) {
    const m = r.map(f.get('match'), `${where}.match`, [
      'agents',
      'tiers',
      'owners',
      'users',
      'user_groups',
      'connectors',
      'actions',
      'params',
      'query',
      'headers',
      'body',
      'time',
    ])
    const set = (key: string, valid?: (v: string) => boolean, what?: string): Set<string> | null => {
      if (!m.has(key)) return null
      const values = r.strings(m.get(key), `${where}.match.${key}`)
      for (const v of values)
        if (valid && !valid(v)) r.issue(m.get(key), `${where}.match.${key}: unknown ${what} '${v}'`)
      return new Set(values)
    }
    agents = set('agents', (v) => registry.agents.has(v), 'agent')
    const tiers = set('tiers', (v) => (TIERS as readonly string[]).includes(v), 'tier')
    const owners = set('owners')
    const users = set('users')
    const userGroups = set('user_groups')
    connectors = set('connectors', (v) => catalog.connectors.has(v), 'connector')
    if (m.has('actions')) {
      const globs = r.strings(m.get('actions'), `${where}.match.actions`)
      actions = globToRegExp(globs)
      const scope = [...catalog.connectors.values()].filter((c) => connectors === null || connectors.has(c.id))
      for (const glob of globs) {
        const re = globToRegExp([glob])
        if (!scope.some((c) => c.actions.some((a) => re.test(a.name))))
          r.issue(
            m.get('actions'),
            `${where}.match.actions: '${glob}' matches no declared action of ${connectors ? [...connectors].join(', ') : 'any connector'}`,
          )
      }
    }
    if (agents) {
      const a = agents
      checks.push({ describe: `agent in [${[...a].join(', ')}]`, test: (x) => a.has(x.agent.id) })
    }
    if (tiers) checks.push({ describe: `tier in [${[...tiers].join(', ')}]`, test: (x) => tiers.has(x.agent.tier) })
    if (owners)
      checks.push({ describe: `owner in [${[...owners].join(', ')}]`, test: (x) => owners.has(x.agent.owner) })
    if (users)
      checks.push({
        describe: `user in [${[...users].join(', ')}]`,
        test: (x) => x.user !== null && users.has(x.user.id),
      })
    if (userGroups) {
      checks.push({
        describe: `user in a group of [${[...userGroups].join(', ')}]`,
        test: (x) => x.user !== null && x.user.groups.some((g) => userGroups.has(g)),
      })
    }
    const fieldChecks = (
      key: string,
      read: (path: readonly string[]) => (x: RequestFacts) => FieldRead,
      nested: boolean,
    ): void => {
      if (!m.has(key)) return
      for (const [name, spec] of r.entries(m.get(key), `${where}.match.${key}`)) {
        const path = nested ? fieldPath(name) : [key === 'headers' ? name.toLowerCase() : name]
        if (typeof path === 'string') {
          r.issue(spec, `${where}.match.${key}: ${path}`)
          continue
        }
        const c: CompiledCondition | string = compileCondition(r.value(spec), {
          field: `${key}.${path.join('.')}`,
          many: path.includes('*'),
          denies: effect === 'deny',
        })
        if (typeof c === 'string') {
          r.issue(spec, `${where}.match: ${c}`)
          continue
        }
        const get = read(path)
        checks.push({ describe: c.describe, test: (x) => c.test(get(x)) })
      }
    }
    const one = (value: unknown): FieldRead => ({ many: false, value })
    fieldChecks(
      'params',
      ([name]) =>
        (x) =>
          one(x.params[name as string]),
      false,
    )
    fieldChecks('query', (path) => (x) => readPath(x.query, path), true)
    fieldChecks(
      'headers',
      ([name]) =>
        (x) =>
          one(x.headers.get(name as string)),
      false,
    )
    fieldChecks(
      'body',
      (path) => {
        readsBody = true
        return (x) => readPath(x.body, path)
      },
      true,
    )
    if (m.has('time')) checks.push(compileTimeWindow(r, m.get('time'), `${where}.match.time`))
  }

  const reason = f.has('reason') ? r.string(f.get('reason'), `${where}.reason`) : defaultReason(effect, id)
  const line = r.position(node).line
  return {
    rule: { id, effect, shadow: mode === 'shadow', reason, approvers, approvals, line, agents, checks },
    connectors,
    actions,
    readsBody,
  }
}

function defaultReason(effect: Effect, id: string): string {
  if (effect === 'allow') return `allowed by rule '${id}'`
  if (effect === 'deny') return `denied by rule '${id}'`
  return `rule '${id}' requires approval`
}

function compileTimeWindow(r: YamlReader, node: Node | undefined, where: string): RuleCheck {
  const f = r.map(node, where, ['days', 'hours', 'timezone'])
  const days = f.has('days') ? new Set(r.strings(f.get('days'), `${where}.days`).map((d) => d.toLowerCase())) : null
  for (const d of days ?? [])
    if (!(DAYS as readonly string[]).includes(d))
      r.issue(f.get('days'), `${where}.days: unknown day '${d}' (use ${DAYS.join(', ')})`)
  let from = 0
  let to = 24 * 60
  if (f.has('hours')) {
    const text = r.string(f.get('hours'), `${where}.hours`)
    const m = /^(\d{2}):(\d{2})-(\d{2}):(\d{2})$/.exec(text)
    if (!m) r.issue(f.get('hours'), `${where}.hours must look like 09:00-17:30`)
    else {
      from = Number(m[1]) * 60 + Number(m[2])
      to = Number(m[3]) * 60 + Number(m[4])
      if (from >= to || to > 24 * 60)
        r.issue(f.get('hours'), `${where}.hours: the window must start before it ends, within one day`)
    }
  }
  const timeZone = f.has('timezone') ? r.string(f.get('timezone'), `${where}.timezone`) : 'UTC'
  let format: Intl.DateTimeFormat
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
  } catch {
    r.issue(f.get('timezone'), `${where}.timezone: unknown time zone '${timeZone}'`)
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: 'UTC',
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
  }
  const describe = `time within ${days ? [...days].join('/') : 'any day'} ${f.has('hours') ? r.string(f.get('hours'), where) : 'all day'} ${timeZone}`
  return {
    describe,
    test: (x) => {
      const parts = format.formatToParts(x.now)
      const part = (type: string): string => parts.find((p) => p.type === type)?.value ?? ''
      const minute = Number(part('hour')) * 60 + Number(part('minute'))
      return (days === null || days.has(part('weekday').toLowerCase())) && minute >= from && minute < to
    },
  }
}

function compileUserPermission(r: YamlReader, node: Node, where: string, catalog: ConnectorCatalog): UserPermission {
  const f = r.map(node, where, ['groups', 'connectors', 'actions', 'max_risk'], ['groups', 'max_risk'])
  const connectors = f.has('connectors') ? new Set(r.strings(f.get('connectors'), `${where}.connectors`)) : null
  for (const c of connectors ?? [])
    if (!catalog.connectors.has(c)) r.issue(f.get('connectors'), `${where}.connectors: unknown connector '${c}'`)
  return {
    groups: new Set(r.strings(f.get('groups'), `${where}.groups`)),
    connectors,
    actions: f.has('actions') ? globToRegExp(r.strings(f.get('actions'), `${where}.actions`)) : null,
    maxRisk: r.oneOf(f.get('max_risk'), `${where}.max_risk`, RISKS),
  }
}
