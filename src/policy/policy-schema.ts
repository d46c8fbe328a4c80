/** The format of policy.yaml: the rules a security team reviews. */
import * as z from 'zod'
import { oneOf, strict, text, textList, wholeNumber } from '../config/schema-types.ts'
import { RISKS } from '../registry/risk.ts'
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
  },
  'policy.yaml: the action policy; anything no rule allows is denied',
)

export type PolicyFile = z.output<typeof policyFileSchema>
export type RuleEntry = PolicyFile['rules'][number]
