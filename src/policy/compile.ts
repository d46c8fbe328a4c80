/**
 * policy.yaml → CompiledPolicy. Compilation checks every rule against the agent registry and
 * the connector catalog (an unknown agent, connector or action is an error with its position),
 * then indexes rules by (connector, action, agent) so that evaluating a request touches only
 * the rules that could apply to it, however long the policy grows.
 */
import { pathText, type YamlReader } from '../config/yaml-reader.ts'
import type { AgentRegistry } from '../registry/agents.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import { TIERS, type Risk } from '../registry/risk.ts'
import { readPath, type FieldRead } from '../request/fields.ts'
import { compileCondition, fieldPath, type CompiledCondition } from './conditions.ts'
import type { Effect } from './decision.ts'
import type { RequestFacts } from './facts.ts'
import { policyFileSchema, type PolicyFile, type RuleEntry } from './policy-schema.ts'

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

interface RuleDraft {
  rule: CompiledRule
  connectors: ReadonlySet<string> | null
  actions: RegExp | null
  readsBody: boolean
}

/** Compiles policy.yaml; problems are recorded on the reader. */
export function compilePolicy(r: YamlReader, registry: AgentRegistry, catalog: ConnectorCatalog): CompiledPolicy {
  const file = r.parse(policyFileSchema, 'policy file')
  const rules = file
    ? file.rules.map((rule, i) => [rule, i] as const)
    : r.wellFormedEntries(['rules'], policyFileSchema.shape.rules.element)
  const drafts: RuleDraft[] = []
  const ids = new Set<string>()
  for (const [entry, i] of rules) {
    const draft = compileRule(r, entry, i, registry, catalog)
    if (ids.has(draft.rule.id)) r.issueAt(['rules', i], `duplicate rule id '${draft.rule.id}'`)
    ids.add(draft.rule.id)
    drafts.push(draft)
  }
  const userPermissions = file?.user_permissions?.map((entry, i) => compileUserPermission(r, entry, i, catalog)) ?? null
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
  f: RuleEntry,
  index: number,
  registry: AgentRegistry,
  catalog: ConnectorCatalog,
): RuleDraft {
  const at = ['rules', index] as const
  const where = `rules[${index}]`
  const { id, effect } = f
  const approvers = f.approvers ?? []
  if (effect === 'require_approval' && approvers.length === 0)
    r.issueAt(at, `${where}: require_approval needs 'approvers' (the approver groups)`)
  if (effect !== 'require_approval' && f.approvers !== undefined)
    r.issueAt([...at, 'approvers'], `${where}: 'approvers' applies only to require_approval`)
  if (effect !== 'require_approval' && f.approvals !== undefined)
    r.issueAt([...at, 'approvals'], `${where}.approvals applies only to require_approval`)

  const checks: RuleCheck[] = []
  let agents: ReadonlySet<string> | null = null
  let connectors: ReadonlySet<string> | null = null
  let actions: RegExp | null = null
  let readsBody = false

  const m = f.match
  if (m) {
    const mat = [...at, 'match'] as const
    const set = (
      key: keyof typeof m & string,
      values: readonly string[] | undefined,
      valid?: (v: string) => boolean,
    ) => {
      if (values === undefined) return null
      for (const v of values)
        if (valid && !valid(v))
          r.issueAt([...mat, key], `${where}.match.${key}: unknown ${key.replace(/s$/, '')} '${v}'`)
      return new Set(values)
    }
    agents = set('agents', m.agents, (v) => registry.agents.has(v))
    const tiers = set('tiers', m.tiers, (v) => (TIERS as readonly string[]).includes(v))
    const owners = set('owners', m.owners)
    const users = set('users', m.users)
    const userGroups = set('user_groups', m.user_groups)
    connectors = set('connectors', m.connectors, (v) => catalog.connectors.has(v))
    if (m.actions) {
      actions = globToRegExp(m.actions)
      const scope = [...catalog.connectors.values()].filter((c) => connectors === null || connectors.has(c.id))
      for (const glob of m.actions) {
        const re = globToRegExp([glob])
        if (!scope.some((c) => c.actions.some((a) => re.test(a.name))))
          r.issueAt(
            [...mat, 'actions'],
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
      key: 'params' | 'query' | 'headers' | 'body',
      read: (path: readonly string[]) => (x: RequestFacts) => FieldRead,
      nested: boolean,
    ): void => {
      for (const [name, spec] of Object.entries(m[key] ?? {})) {
        const specAt = [...mat, key, name]
        const path = nested ? fieldPath(name) : [key === 'headers' ? name.toLowerCase() : name]
        if (typeof path === 'string') {
          r.issueAt(specAt, `${where}.match.${key}: ${path}`)
          continue
        }
        const c: CompiledCondition | string = compileCondition(spec, {
          field: `${key}.${path.join('.')}`,
          many: path.includes('*'),
          denies: effect === 'deny',
        })
        if (typeof c === 'string') {
          r.issueAt(specAt, `${where}.match: ${c}`)
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
    if (m.time) checks.push(compileTimeWindow(r, m.time, [...mat, 'time']))
  }

  const reason = f.reason ?? defaultReason(effect, id)
  const line = r.position(r.nodeAt(at)).line
  return {
    rule: {
      id,
      effect,
      shadow: f.mode === 'shadow',
      reason,
      approvers,
      approvals: f.approvals ?? 1,
      line,
      agents,
      checks,
    },
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

type TimeEntry = NonNullable<NonNullable<RuleEntry['match']>['time']>

function compileTimeWindow(r: YamlReader, f: TimeEntry, at: readonly PropertyKey[]): RuleCheck {
  const where = pathText('', at)
  const days = f.days ? new Set(f.days.map((d) => d.toLowerCase())) : null
  for (const d of days ?? [])
    if (!(DAYS as readonly string[]).includes(d))
      r.issueAt([...at, 'days'], `${where}.days: unknown day '${d}' (use ${DAYS.join(', ')})`)
  let from = 0
  let to = 24 * 60
  if (f.hours !== undefined) {
    const [h1, m1, h2, m2] = f.hours.split(/[:-]/).map(Number) as [number, number, number, number]
    from = h1 * 60 + m1
    to = h2 * 60 + m2
    if (from >= to || to > 24 * 60)
      r.issueAt([...at, 'hours'], `${where}.hours: the window must start before it ends, within one day`)
  }
  const timeZone = f.timezone ?? 'UTC'
  const formatIn = (zone: string) =>
    new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
  let format: Intl.DateTimeFormat
  try {
    format = formatIn(timeZone)
  } catch {
    r.issueAt([...at, 'timezone'], `${where}.timezone: unknown time zone '${timeZone}'`)
    format = formatIn('UTC')
  }
  const describe = `time within ${days ? [...days].join('/') : 'any day'} ${f.hours ?? 'all day'} ${timeZone}`
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

type UserPermissionEntry = NonNullable<PolicyFile['user_permissions']>[number]

function compileUserPermission(
  r: YamlReader,
  f: UserPermissionEntry,
  index: number,
  catalog: ConnectorCatalog,
): UserPermission {
  const connectors = f.connectors ? new Set(f.connectors) : null
  for (const c of connectors ?? [])
    if (!catalog.connectors.has(c))
      r.issueAt(
        ['user_permissions', index, 'connectors'],
        `user_permissions[${index}].connectors: unknown connector '${c}'`,
      )
  return {
    groups: new Set(f.groups),
    connectors,
    actions: f.actions ? globToRegExp(f.actions) : null,
    maxRisk: f.max_risk,
  }
}
