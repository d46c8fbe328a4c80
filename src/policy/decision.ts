/**
 * A decision is a value, never an exception: allow, deny or require_approval, with the rule
 * that decided it, a reason an agent can act on and, for denials, the factor that limited it.
 */
export const EFFECTS = ['allow', 'deny', 'require_approval'] as const
export type Effect = (typeof EFFECTS)[number]

/** Which part of the permission intersection refused the request. */
export const LIMITING_FACTORS = [
  'agent_status',
  'agent_connectors',
  'agent_tier',
  'user_required',
  'user_permission',
  'connector_certification',
  'connector_scope',
  'policy_rule',
  'policy_default',
] as const
export type LimitingFactor = (typeof LIMITING_FACTORS)[number]

export interface ShadowResult {
  readonly rule: string
  readonly effect: Effect
}

export interface Decision {
  readonly effect: Effect
  readonly rule: string | null
  readonly reason: string
  readonly limitingFactor: LimitingFactor | null
  /** Approver groups named by the deciding rule (require_approval only). */
  readonly approvers: readonly string[]
  /** Distinct approvals the deciding rule asks for (require_approval only; 0 otherwise). */
  readonly approvals: number
  /** Report-only rules that matched, with what they would have done. */
  readonly shadow: readonly ShadowResult[]
  readonly policyVersion: string
}
