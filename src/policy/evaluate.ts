/**
 * (CompiledPolicy, RequestFacts) → Decision. Synchronous and free of I/O: the same function
 * serves live traffic, `corridor policy test` and `corridor policy explain`.
 *
 * What is allowed is the intersection of
 *   the agent (active, connector granted, tier caps the action's risk),
 *   the delegated user (required when the agent says so; within the policy's user permissions),
 *   the connector (certified, and the request maps to a declared action), and
 *   the rules (deny beats require_approval beats allow; nothing matching means deny).
 * The first factor that refuses is named in the decision.
 */
import { riskRank, tierCap, tierPermits } from '../registry/risk.ts'
import { isCorridorError } from '../shared/errors.ts'
import { bucketFor, type CompiledPolicy, type CompiledRule } from './compile.ts'
import type { RuleCheck } from './match.ts'
import type { Decision, LimitingFactor, ShadowResult } from './decision.ts'
import type { RequestFacts } from './facts.ts'

/** Collects the reasoning behind a decision, for `policy explain`. */
export interface Trace {
  step(what: string, passed: boolean): void
  rule(rule: CompiledRule, failed: RuleCheck | null): void
}

const NO_SHADOW: readonly ShadowResult[] = []

/**
 * Decides a request and, for batch and GraphQL requests, every part it carries: any part denied
 * denies the whole request; any part that needs approval holds the whole request (approvers must
 * be a group every such part accepts, and the count is the largest asked).
 */
export function evaluate(policy: CompiledPolicy, policyVersion: string, facts: RequestFacts, trace?: Trace): Decision {
  const main = evaluateOne(policy, policyVersion, facts, trace)
  if (main.effect === 'deny' || facts.parts.length === 0) return main
  let held: Decision | null = main.effect === 'require_approval' ? main : null
  for (const part of facts.parts) {
    const label = part.label ?? part.path
    trace?.step(`part ${label}`, true)
    const one = evaluateOne(policy, policyVersion, part, trace)
    // A privileged part needs two approvers even when the batch action itself is not privileged.
    const d =
      one.effect === 'require_approval' && part.action?.risk === 'privileged'
        ? { ...one, approvals: Math.max(2, one.approvals) }
        : one
    if (d.effect === 'deny') return { ...d, reason: `${label}: ${d.reason}`, shadow: main.shadow }
    if (d.effect !== 'require_approval') continue
    if (held === null) {
      held = { ...d, reason: `${label}: ${d.reason}`, shadow: main.shadow }
      continue
    }
    const approvers = held.approvers.filter((g) => d.approvers.includes(g))
    if (approvers.length === 0) {
      const reason = `${label} needs approval from ${d.approvers.join(' or ')}, another part from ${held.approvers.join(' or ')}; send them as separate requests`
      trace?.step(reason, false)
      return {
        effect: 'deny',
        rule: d.rule,
        reason,
        limitingFactor: 'policy_rule',
        approvers: [],
        approvals: 0,
        shadow: main.shadow,
        policyVersion,
      }
    }
    held = { ...held, approvers, approvals: Math.max(held.approvals, d.approvals) }
  }
  return held ?? main
}

function evaluateOne(policy: CompiledPolicy, policyVersion: string, facts: RequestFacts, trace?: Trace): Decision {
  const deny = (limitingFactor: LimitingFactor, reason: string, shadow = NO_SHADOW): Decision => {
    trace?.step(reason, false)
    return { effect: 'deny', rule: null, reason, limitingFactor, approvers: [], approvals: 0, shadow, policyVersion }
  }
  const { agent, connector, action, user } = facts

  if (agent.status !== 'active') return deny('agent_status', `agent '${agent.id}' is ${agent.status}`)
  trace?.step(`agent '${agent.id}' is active`, true)
  if (!agent.connectors.has(connector.id))
    return deny('agent_connectors', `agent '${agent.id}' is not granted connector '${connector.id}'`)
  trace?.step(`agent is granted connector '${connector.id}'`, true)
  if (!(facts.now <= connector.certifiedUntilMs)) {
    return deny(
      'connector_certification',
      `connector '${connector.id}' certification expired on ${connector.certifiedUntil}`,
    )
  }
  trace?.step(`connector '${connector.id}' is certified until ${connector.certifiedUntil}`, true)
  if (action === null) {
    return deny(
      'connector_scope',
      `${facts.method} ${facts.path} is not a declared action of connector '${connector.id}'`,
    )
  }
  trace?.step(`request maps to declared action '${action.name}' (risk ${action.risk})`, true)

  const bucket = bucketFor(policy, connector.id, action.name)
  let shadow = NO_SHADOW
  if (bucket.shadow.length > 0) {
    const hits: ShadowResult[] = []
    for (const rule of bucket.shadow) {
      // A report-only rule never refuses a request: a value it finds ambiguous only means it did not match.
      let failed: RuleCheck | null
      try {
        failed = firstFailingCheck(rule, facts)
      } catch (err) {
        if (!isCorridorError(err)) throw err
        failed = rule.checks[0] ?? null
      }
      trace?.rule(rule, failed)
      if (failed === null) hits.push({ rule: rule.id, effect: rule.effect })
    }
    shadow = hits
  }

  if (!tierPermits(agent.tier, action.risk)) {
    return deny(
      'agent_tier',
      `agent tier '${agent.tier}' allows at most '${tierCap(agent.tier)}' actions; '${action.name}' is '${action.risk}'`,
      shadow,
    )
  }
  trace?.step(`tier '${agent.tier}' permits risk '${action.risk}'`, true)
  if (user === null) {
    if (agent.user === 'required')
      return deny('user_required', `agent '${agent.id}' must act for a delegated user, and none was given`, shadow)
  } else if (policy.userPermissions !== null) {
    const permitted = policy.userPermissions.some(
      (p) =>
        user.groups.some((g) => p.groups.has(g)) &&
        (p.connectors === null || p.connectors.has(connector.id)) &&
        (p.actions === null || p.actions.test(action.name)) &&
        riskRank(action.risk) <= riskRank(p.maxRisk),
    )
    if (!permitted)
      return deny('user_permission', `user '${user.id}' is not permitted '${action.name}' on '${connector.id}'`, shadow)
    trace?.step(`user '${user.id}' is permitted '${action.name}'`, true)
  }

  let approval: CompiledRule | null = null
  let allow: CompiledRule | null = null
  const rules = bucket.byAgent.get(agent.id) ?? bucket.generic
  for (const rule of rules) {
    const failed = firstFailingCheck(rule, facts)
    trace?.rule(rule, failed)
    if (failed !== null) continue
    if (rule.effect === 'deny') {
      return {
        effect: 'deny',
        rule: rule.id,
        reason: rule.reason,
        limitingFactor: 'policy_rule',
        approvers: [],
        approvals: 0,
        shadow,
        policyVersion,
      }
    }
    if (rule.effect === 'require_approval') approval ??= rule
    else allow ??= rule
  }
  if (approval !== null) {
    return {
      effect: 'require_approval',
      rule: approval.id,
      reason: approval.reason,
      limitingFactor: null,
      approvers: approval.approvers,
      approvals: approval.approvals,
      shadow,
      policyVersion,
    }
  }
  if (allow !== null)
    return {
      effect: 'allow',
      rule: allow.id,
      reason: allow.reason,
      limitingFactor: null,
      approvers: [],
      approvals: 0,
      shadow,
      policyVersion,
    }
  return deny('policy_default', `no rule allows '${action.name}' for agent '${agent.id}' (default deny)`, shadow)
}

function firstFailingCheck(rule: CompiledRule, facts: RequestFacts): RuleCheck | null {
  for (const check of rule.checks) if (!check.test(facts)) return check
  return null
}
