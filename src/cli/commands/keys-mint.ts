/** `corridor keys mint --agent ID | --approver ID | --operator ID | --auditor ID`: a new key, shown once, and the hash line to store. */
import {
  API_KEY_PREFIX,
  APPROVER_KEY_PREFIX,
  AUDITOR_KEY_PREFIX,
  mintApiKey,
  OPERATOR_KEY_PREFIX,
} from '../../registry/agents.ts'
import { UsageError, type Command } from '../command.ts'

const KINDS = {
  agent: {
    prefix: API_KEY_PREFIX,
    shown: (id: string) => `API key for agent '${id}' (shown once; give it to the agent as its API key):`,
    where: `add this under the agent's api_keys in agents.yaml:`,
  },
  approver: {
    prefix: APPROVER_KEY_PREFIX,
    shown: (id: string) => `approver key for '${id}' (shown once; the approver sets it as CORRIDOR_APPROVER_TOKEN):`,
    where: `add this under the approver's keys in agents.yaml (approvers:):`,
  },
  auditor: {
    prefix: AUDITOR_KEY_PREFIX,
    shown: (id: string) =>
      `auditor key for '${id}' (shown once; the auditor sends it as a Bearer token to GET /audit):`,
    where: `add this under the auditor's keys in agents.yaml (auditors:):`,
  },
  operator: {
    prefix: OPERATOR_KEY_PREFIX,
    shown: (id: string) => `operator key for '${id}' (shown once; the operator sets it as CORRIDOR_OPERATOR_TOKEN):`,
    where: `add this under the operator's keys in agents.yaml (operators:):`,
  },
} as const

export const keysMintCommand: Command = {
  words: ['keys', 'mint'],
  usage: 'corridor keys mint (--agent ID | --approver ID | --operator ID | --auditor ID)',
  options: {
    agent: { type: 'string' },
    approver: { type: 'string' },
    operator: { type: 'string' },
    auditor: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out, err }) {
    const given = (Object.keys(KINDS) as (keyof typeof KINDS)[]).filter((k) => typeof values[k] === 'string')
    if (given.length !== 1)
      throw new UsageError('mint needs one of --agent ID, --approver ID, --operator ID or --auditor ID')
    const kind = KINDS[given[0] as keyof typeof KINDS]
    const { key, hash } = mintApiKey(kind.prefix)
    err(kind.shown(String(values[given[0] as string])))
    out(key)
    err(kind.where)
    out(`      - { hash: "${hash}", label: "minted ${new Date().toISOString().slice(0, 10)}" }`)
    return 0
  },
}
