/**
 * policy.yaml → CompiledPolicy. Compilation checks every rule against the agent registry and
 * the connector catalog (an unknown agent, connector or action is an error with its position),
 * then indexes rules by (connector, action, agent) so that evaluating a request touches only
 * the rules that could apply to it, however long the policy grows.
 */
import type { YamlReader } from '../config/yaml-reader.ts'
import type { AgentRegistry } from '../registry/agents.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import type { Risk } from '../registry/risk.ts'
import type { Effect } from './decision.ts'
import { compileLimits, LIMIT_RULE_PREFIX, limitsForAction, type CompiledLimit } from './limits.ts'
import { compileMatch, globToRegExp, type RuleCheck } from './match.ts'

import { limitSchema, policyFileSchema, type PolicyFile, type RuleEntry } from './policy-schema.ts'

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
  /** Whether any rule or limit here reads the body (a body Corridor cannot parse is then refused). */
  readonly readsBody: boolean
  /** The limits that may count this action (policy.yaml `limits:`), in file order. */
  readonly limits: readonly CompiledLimit[]
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
  readonly limits: readonly CompiledLimit[]
}

const EMPTY_BUCKET: RuleBucket = { generic: [], byAgent: new Map(), shadow: [], readsBody: false, limits: [] }
export function bucketFor(policy: CompiledPolicy, connector: string, action: string): RuleBucket {
  return policy.buckets.get(connector)?.get(action) ?? EMPTY_BUCKET
}

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
    // A request held by a limit is recorded under rule `limit:<id>`; a rule may not pass for one.
    if (draft.rule.id.startsWith(LIMIT_RULE_PREFIX))
      r.issueAt(['rules', i, 'id'], `rule ids starting with '${LIMIT_RULE_PREFIX}' are reserved for holds by limits`)
    ids.add(draft.rule.id)
    drafts.push(draft)
  }
  const userPermissions = file?.user_permissions?.map((entry, i) => compileUserPermission(r, entry, i, catalog)) ?? null
  const limits = compileLimits(
    r,
    file ? (file.limits ?? []).map((l, i) => [l, i] as const) : r.wellFormedEntries(['limits'], limitSchema),
    registry,
    catalog,
  )
  return { rules: drafts.map((d) => d.rule), buckets: indexRules(drafts, limits, catalog), userPermissions, limits }
}

function indexRules(
  drafts: readonly RuleDraft[],
  limits: readonly CompiledLimit[],
  catalog: ConnectorCatalog,
): Map<string, Map<string, RuleBucket>> {
  const buckets = new Map<string, Map<string, RuleBucket>>()
  for (const connector of catalog.connectors.values()) {
    const byAction = new Map<string, RuleBucket>()
    for (const action of connector.actions) {
      const applicable = drafts.filter(
        (d) =>
          (d.connectors === null || d.connectors.has(connector.id)) &&
          (d.actions === null || d.actions.test(action.name)),
      )
      const counted = limitsForAction(limits, connector.id, action.name)
      if (applicable.length === 0 && counted.length === 0) continue
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
        readsBody: applicable.some((d) => d.readsBody) || counted.some((l) => l.readsBody),
        limits: counted,
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

  const { checks, agents, connectors, actions, readsBody } = compileMatch(
    r,
    f.match,
    [...at, 'match'],
    `${where}.match`,
    registry,
    catalog,
    effect === 'deny',
  )

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
