/**
 * Who may decide a held request: pure rules, checked before the store's atomic transition
 * (which adds the one rule that needs the current state: no approver counts twice).
 */
import type { HeldRequest } from './approval.ts'

export interface ApproverIdentity {
  readonly id: string
  readonly groups: readonly string[]
  /** How the approver proved who they are (approver_key or the IdP issuer). */
  readonly via: string
}

/** Approvers see only the requests whose rule names one of their groups; to anyone else they do not exist. */
export function mayView(approver: ApproverIdentity, held: HeldRequest): boolean {
  return held.approverGroups.some((g) => approver.groups.includes(g))
}

/** Why this approver may not decide this request, or null when they may. */
export function whyIneligible(approver: ApproverIdentity, held: HeldRequest): string | null {
  if (!mayView(approver, held)) return `only members of ${held.approverGroups.join(' or ')} may decide this request`
  // Separation of duties: the owner of an agent (a person or a team) cannot wave its requests through.
  if (approver.id === held.owner || approver.groups.includes(held.owner)) {
    return `agent '${held.agent}' is owned by '${held.owner}'; its owners may not decide its requests`
  }
  if (held.user !== null && approver.id === held.user)
    return 'the request was made on your behalf; someone else must decide it'
  return null
}

/** Distinct approvals a request needs: what the rule asks, and never fewer than two for privileged actions. */
export function approvalsRequired(ruleApprovals: number, risk: string | null): number {
  return risk === 'privileged' ? Math.max(2, ruleApprovals) : Math.max(1, ruleApprovals)
}
