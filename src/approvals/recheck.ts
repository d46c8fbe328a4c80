/**
 * An approval is bound to the policy it was held under. Before a held request is released, and
 * whenever the policy changes, it is decided again under the policy now in force, with the
 * agent as the registry now describes it: a policy that no longer permits it (or now allows it
 * outright), a suspended agent or a changed approver requirement cancels it.
 */
import { describedFacts } from '../policy/described-request.ts'
import type { PolicyBundle } from '../policy/bundle.ts'
import { evaluate } from '../policy/evaluate.ts'
import { LIMIT_RULE_PREFIX } from '../policy/limits.ts'
import type { HeldRequest } from './approval.ts'
import { approvalsRequired } from './eligibility.ts'

/** Null when the held request may still be released; otherwise why it is cancelled. */
export function whyNoLongerPermitted(bundle: PolicyBundle, held: HeldRequest, nowMs: number): string | null {
  if (bundle.version === held.policyVersion) return null
  const agent = bundle.registry.agents.get(held.agent)
  if (agent === undefined) return `agent '${held.agent}' is no longer registered`
  if (agent.status === 'suspended') return `agent '${held.agent}' is suspended`
  try {
    if (!bundle.catalog.connectors.has(held.connector)) return `connector '${held.connector}' no longer exists`
    const facts = describedFacts(bundle, {
      agent: held.agent,
      method: held.request.method,
      url: held.request.target,
      ...(held.request.host === null ? {} : { host: held.request.host }),
      ...(held.user === null ? {} : { user: { id: held.user, groups: held.userGroups ?? [] } }),
      headers: held.request.headers,
      body: Buffer.from(held.request.bodyBase64, 'base64'),
      at: new Date(nowMs).toISOString(),
    })
    const decision = evaluate(bundle.policy, bundle.version, facts)
    if (decision.effect === 'deny') return `policy ${bundle.version} denies it: ${decision.reason}`
    // Held because it went over a limit, not by a rule: the policy must still allow it, nothing more.
    if (held.rule?.startsWith(LIMIT_RULE_PREFIX) === true)
      return decision.effect === 'allow'
        ? null
        : `policy ${bundle.version} now requires approval by rule '${decision.rule}'; send it again`
    // Releasing it as well would let the agent's plain retry (now allowed) run it a second time.
    if (decision.effect === 'allow') return `policy ${bundle.version} allows it without approval; send it again`
    // Still require_approval: by the same approvers, and no more of them than were asked for.
    if (decision.approvers.join() !== held.approverGroups.join())
      return `policy ${bundle.version} needs approval from ${decision.approvers.join(' or ')} instead; send the request again`
    const required = approvalsRequired(decision.approvals, facts.action?.risk ?? null)
    if (required > held.required)
      return `policy ${bundle.version} needs ${required} approvals instead of ${held.required}; send the request again`
    return null
  } catch (err) {
    return `it can no longer be routed under policy ${bundle.version}: ${(err as Error).message}`
  }
}
