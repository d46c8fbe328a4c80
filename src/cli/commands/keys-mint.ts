/** `corridor keys mint --agent ID | --approver ID`: a new key, shown once, and the hash line to store. */
import { API_KEY_PREFIX, APPROVER_KEY_PREFIX, mintApiKey } from '../../registry/agents.ts'
import { UsageError, type Command } from '../command.ts'

export const keysMintCommand: Command = {
  words: ['keys', 'mint'],
  usage: 'corridor keys mint (--agent ID | --approver ID)',
  options: { agent: { type: 'string' }, approver: { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run({ values, out, err }) {
    const agent = values['agent']
    const approver = values['approver']
    if ((agent === undefined) === (approver === undefined))
      throw new UsageError('mint needs --agent ID or --approver ID')
    const forApprover = approver !== undefined
    const { key, hash } = mintApiKey(forApprover ? APPROVER_KEY_PREFIX : API_KEY_PREFIX)
    err(
      forApprover
        ? `approver key for '${String(approver)}' (shown once; the approver sets it as CORRIDOR_APPROVER_TOKEN):`
        : `API key for agent '${String(agent)}' (shown once; give it to the agent as its API key):`,
    )
    out(key)
    err(
      forApprover
        ? `add this under the approver's keys in agents.yaml (approvers:):`
        : `add this under the agent's api_keys in agents.yaml:`,
    )
    out(`      - { hash: "${hash}", label: "minted ${new Date().toISOString().slice(0, 10)}" }`)
    return 0
  },
}
