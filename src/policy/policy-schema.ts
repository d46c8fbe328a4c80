/** The format of policy.yaml: the rules a security team reviews. */
import * as z from 'zod'
import { duration, oneOf, strict, text, textList, wholeNumber } from '../config/schema-types.ts'
import { COST_CLASSES, RISKS } from '../registry/risk.ts'
import { EFFECTS } from './decision.ts'

const condition = z
  .unknown()
  .describe(
    'A scalar (equals), a list (in), or a mapping of operators: equals, not_equals, in, not_in, lt, lte, gt, gte, present; ' +
      'or one quantifier over a list: any, all, count',
  )
const conditions = (what: string) => z.record(z.string(), condition).optional().describe(what)

const match = strict(
  {
    agents: textList().optional().describe('Agent ids from agents.yaml'),
    tiers: textList().optional(),
    owners: textList().optional(),
    users: textList().optional().describe('Delegated user ids'),
    user_groups: textList().optional(),
    connectors: textList().optional().describe('Connector ids from connectors.yaml'),
    actions: textList().optional().describe("Action names; '*' matches any run of characters"),
    cost: z
      .union([oneOf(COST_CLASSES), z.array(oneOf(COST_CLASSES)).min(1), strict({ above: oneOf(COST_CLASSES) })])
      .optional()
      .describe(
        "The action's declared cost class: one, a list, or {above: low|medium}; actions without one never match",
      ),
    params: conditions('Path template parameters'),
    query: conditions('Query fields (dots and brackets nest; * reads every element)'),
    headers: conditions('Request headers (names are case-insensitive)'),
    body: conditions('JSON or form body fields (dots and brackets nest; * reads every element)'),
    time: strict({
      days: textList().optional().describe('mon, tue, wed, thu, fri, sat, sun'),
      hours: z
        .string()
        .regex(/^\d{2}:\d{2}-\d{2}:\d{2}$/, { error: 'must look like 09:00-17:30' })
        .optional(),
      timezone: text().optional().describe('An IANA time zone such as Europe/Paris (default UTC)'),
    }).optional(),
  },
  'Every condition given must hold for the rule to apply',
)

const rule = strict({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, {
    error: "must use only letters, digits, '_', '.', ':' and '-'",
  }),
  description: text().optional(),
  effect: oneOf(EFFECTS),
  mode: oneOf(['enforce', 'shadow'])
    .optional()
    .describe('shadow: evaluated and reported, never enforced (default enforce)'),
  reason: text().optional().describe('Told to the agent and recorded in the audit trail'),
  approvers: textList().optional().describe('Approver groups that may release a held request'),
  approvals: wholeNumber(1, 5).optional().describe('Distinct approvals needed (default 1)'),
  match: match.optional(),
})

const RATE = /^(\d+)\s*\/\s*(\d+(?:\.\d+)?)?(ms|s|m|h|d)$/
const RATE_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `10/s`, `1000/1d`, `50/10m`: at most that many requests per window of that length. */
const rate = () =>
  z
    .string()
    .regex(RATE, { error: 'must look like 10/s, 100/m, 1000/1d or 50/10m' })
    .transform((v) => {
      const m = RATE.exec(v) as RegExpExecArray
      return {
        max: Number(m[1]),
        windowMs: Math.round(Number(m[2] ?? 1) * (RATE_UNITS[m[3] as string] as number)),
        text: v,
      }
    })

export const LIMIT_DIMENSIONS = ['agent', 'owner', 'user', 'connector', 'action'] as const

export const limitSchema = strict({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, {
    error: "must use only letters, digits, '_', '.', ':' and '-'",
  }),
  description: text().optional(),
  match: match.optional().describe('Which requests the limit counts (the same conditions as a rule)'),
  per: z
    .array(oneOf(LIMIT_DIMENSIONS))
    .optional()
    .describe('One counter per value of these (default [agent]); [] is one counter for every request matched'),
  rate: z
    .union([rate(), z.array(rate()).min(1)], {
      error: 'must be a rate such as 10/s, 100/m or 1000/1d, or a list of them',
    })
    .optional()
    .describe('Requests per window, one or several windows (10/s, 1000/1d); every window must have room'),
  budget: strict({
    sum: text()
      .optional()
      .describe(
        'The body field summed (dots and brackets nest; * sums every element); absent: successful requests are counted',
      ),
    max: z.number().positive(),
    window: duration().describe('The window the budget is counted over: 1h, 1d…'),
  })
    .optional()
    .describe('Reserved before forwarding, kept on an upstream 2xx, given back otherwise'),
  concurrency: wholeNumber(1, 1_000_000).optional().describe('Requests in flight at once'),
  identical: strict({ max: wholeNumber(1, 1_000_000), within: duration() })
    .optional()
    .describe('Loop guard: the same request (same canonical digest) at most max times within the window'),
  failures: strict({ max: wholeNumber(1, 1_000_000) })
    .optional()
    .describe('Loop guard: after max upstream 4xx/5xx answers in a row, refused until one succeeds or an hour passes'),
  timezone: text().optional().describe('IANA time zone day-long windows start at midnight in (default UTC)'),
  on_exceed: oneOf(['deny', 'require_approval'])
    .optional()
    .describe('What happens to a request over the limit (default deny); require_approval needs approvers'),
  approvers: textList().optional().describe('Approver groups that may release a request over the limit'),
  mode: oneOf(['enforce', 'shadow'])
    .optional()
    .describe('shadow: counted and recorded, never enforced (default enforce)'),
})

export const policyFileSchema = strict(
  {
    version: z.literal(1, { error: 'must be 1' }),
    rules: z.array(rule).describe('Evaluated together: any matching deny wins, then require_approval, then allow'),
    user_permissions: z
      .array(
        strict({
          groups: textList(),
          connectors: textList().optional(),
          actions: textList().optional(),
          max_risk: oneOf(RISKS),
        }),
      )
      .optional()
      .describe('What delegated users may have done on their behalf, by group'),
    limits: z
      .array(limitSchema)
      .optional()
      .describe('Rate limits, concurrency caps, budgets and loop guards, counted across replicas'),
  },
  'policy.yaml: the action policy; anything no rule allows is denied',
)

export type PolicyFile = z.output<typeof policyFileSchema>
export type RuleEntry = PolicyFile['rules'][number]
export type LimitEntry = NonNullable<PolicyFile['limits']>[number]
