/**
 * Risk levels of connector actions and the trust tiers of agents. A tier caps the highest risk
 * an agent may ever reach, whatever a policy rule says.
 */
export const RISKS = ['read', 'write', 'transactional', 'privileged'] as const
export type Risk = (typeof RISKS)[number]

export const TIERS = ['read-only', 'bounded-write', 'transactional', 'privileged'] as const
export type Tier = (typeof TIERS)[number]

const TIER_CAP: Record<Tier, Risk> = {
  'read-only': 'read',
  'bounded-write': 'write',
  transactional: 'transactional',
  privileged: 'privileged',
}

export function riskRank(risk: Risk): number {
  return RISKS.indexOf(risk)
}

export function tierCap(tier: Tier): Risk {
  return TIER_CAP[tier]
}

export function tierPermits(tier: Tier, risk: Risk): boolean {
  return riskRank(risk) <= riskRank(TIER_CAP[tier])
}

/** What an action costs when it runs (money, load, blast radius), as its connector declares: rules and limits match on it. */
export const COST_CLASSES = ['low', 'medium', 'high'] as const
export type CostClass = (typeof COST_CLASSES)[number]
