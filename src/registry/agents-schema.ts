/** The format of agents.yaml: the agents that may call Corridor and the approvers holding keys. */
import * as z from 'zod'
import { oneOf, strict, text, textList } from '../config/schema-types.ts'
import { TIERS } from './risk.ts'

const keyHashes = z
  .array(
    strict({
      hash: z
        .string()
        .regex(/^sha256:[0-9a-f]{64}$/, {
          error: "must be 'sha256:' followed by 64 lowercase hex digits (see 'corridor keys mint')",
        })
        .describe('sha256:<hex> of the key, as printed by corridor keys mint'),
      label: text().optional(),
      created: z.union([text(), z.number()]).optional(),
    }),
  )
  .describe('Hashes of the keys this identity may present; the keys themselves are never stored')

export const agentsFileSchema = strict(
  {
    agents: z.array(
      strict({
        id: text(),
        owner: text().describe('The team accountable for this agent'),
        tier: oneOf(TIERS).describe('The highest risk this agent may ever reach, whatever a rule says'),
        status: oneOf(['active', 'suspended']).optional(),
        connectors: textList().describe('Connector ids this agent may reach'),
        user: oneOf(['optional', 'required'])
          .optional()
          .describe('Whether a delegated user token must accompany every request'),
        api_keys: keyHashes.optional(),
        description: text().optional(),
      }),
    ),
    approvers: z
      .array(
        strict({
          id: text(),
          groups: textList().describe('Approver groups this person belongs to (rules name groups)'),
          keys: keyHashes,
          description: text().optional(),
        }),
      )
      .optional(),
    operators: z
      .array(
        strict({
          id: text(),
          keys: keyHashes,
          description: text().optional(),
        }),
      )
      .optional()
      .describe('People who may stop and resume agents at runtime (corridor stop), with operator keys (cop_…)'),
    auditors: z
      .array(strict({ id: text(), keys: keyHashes, description: text().optional() }))
      .optional()
      .describe('People who may read the audit trail on the admin API (GET /audit), with auditor keys (cau_…)'),
  },
  'agents.yaml: who may call Corridor, on whose behalf, and how far they may go',
)

export type AgentsFile = z.output<typeof agentsFileSchema>
