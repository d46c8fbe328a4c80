/** The format of policy test suites (`*.test.yaml`): requests described, and the decision expected for each. */
import * as z from 'zod'
import { oneOf, strict, text, textList } from '../../config/schema-types.ts'
import { EFFECTS, LIMITING_FACTORS } from '../../policy/decision.ts'
import { ERROR_CATALOG, type ErrorCode } from '../../shared/errors.ts'

const ERROR_CODES = Object.keys(ERROR_CATALOG) as [ErrorCode, ...ErrorCode[]]

const request = strict(
  {
    agent: text().describe('An agent id from agents.yaml'),
    method: text().optional().describe('Default GET'),
    url: text().describe('As the agent sends it, with the connector prefix: /github/repos/acme/app/issues'),
    host: text().optional(),
    user: strict({ id: text(), groups: textList().optional() }).optional().describe('A delegated user'),
    headers: z.record(z.string(), text()).optional(),
    body: z.unknown().optional().describe('Sent as JSON unless the headers name another type'),
    at: text().optional().describe('ISO time at which to decide (default now)'),
  },
  'The request, as the agent would send it',
)

const expectation = strict(
  {
    effect: oneOf(EFFECTS).optional(),
    rule: text().nullable().optional().describe('The deciding rule id (null: no rule)'),
    limiting_factor: oneOf(LIMITING_FACTORS).nullable().optional(),
    reason_contains: text().optional(),
    refused: oneOf(ERROR_CODES)
      .optional()
      .describe('The error code of a request refused before or after the decision (ambiguous_request, rate_limited…)'),
  },
  'Either effect (with optional rule, limiting_factor, reason_contains) or refused',
).refine((e) => (e.effect === undefined) !== (e.refused === undefined), {
  error: 'needs either effect or refused (an error code such as ambiguous_request)',
})

export const policyTestFileSchema = strict(
  {
    tests: z.array(
      strict({
        name: text(),
        request,
        counters: z
          .record(z.string(), z.number().nonnegative())
          .optional()
          .describe('What limits have already counted for this request: limit id → used (every window of it)'),
        expect: expectation,
      }),
    ),
  },
  'A policy test suite: run with corridor policy test',
)

export type PolicyTestFile = z.output<typeof policyTestFileSchema>
