/**
 * Who may use the operators' and auditors' APIs: a key of that role from agents.yaml (`cop_…` for
 * operators, `cau_…` for auditors), or an IdP token, verified as approvers' tokens are, whose
 * groups include one of the role's groups (`identity.approver_jwt.operator_groups` /
 * `auditor_groups`). Approver and agent keys never count for either role.
 */
import type { IncomingMessage } from 'node:http'
import type { ApproverAuthenticator } from '../approvals/approver-auth.ts'
import type { PolicyStore } from '../policy/reloader.ts'
import { AUDITOR_KEY_PREFIX, hashApiKey, OPERATOR_KEY_PREFIX } from '../registry/agents.ts'
import { CorridorError } from '../shared/errors.ts'

export type Role = 'operator' | 'auditor'

export interface Principal {
  readonly id: string
  /** operator_key, auditor_key, or the IdP issuer. */
  readonly via: string
}

const ROLES = {
  operator: { prefix: OPERATOR_KEY_PREFIX, list: 'operators', code: 'operator_unauthenticated' },
  auditor: { prefix: AUDITOR_KEY_PREFIX, list: 'auditors', code: 'auditor_unauthenticated' },
} as const

export class Principals {
  readonly #policies: PolicyStore
  readonly #idp: ApproverAuthenticator
  readonly #groups: Readonly<Record<Role, readonly string[]>>

  constructor(policies: PolicyStore, idp: ApproverAuthenticator, groups: Readonly<Record<Role, readonly string[]>>) {
    this.#policies = policies
    this.#idp = idp
    this.#groups = groups
  }

  async authenticate(req: IncomingMessage, role: Role): Promise<Principal> {
    const bundle = this.#policies.current
    if (bundle === null) throw new CorridorError('policy_unavailable')
    const { prefix, list, code } = ROLES[role]
    const header = req.headers.authorization ?? ''
    const groups = this.#groups[role]
    const key = /^Bearer ([a-z]{3}_[A-Za-z0-9_-]+)$/.exec(header)?.[1]
    if (key?.startsWith(prefix) === true) {
      const keys = role === 'operator' ? bundle.registry.operatorKeys : bundle.registry.auditorKeys
      const id = keys.get(hashApiKey(key))
      if (id !== undefined) return { id, via: `${role}_key` }
    } else if (groups.length > 0 && /^Bearer eyJ/.test(header)) {
      const who = await this.#idp.authenticate(header, bundle).catch(() => null)
      if (who !== null && who.groups.some((g) => groups.includes(g))) return { id: who.id, via: who.via }
    }
    throw new CorridorError(
      code,
      `send ${role === 'operator' ? 'an operator' : 'an auditor'} key (${prefix}…, agents.yaml ${list}:)${groups.length > 0 ? ` or an IdP token of an ${role} group` : ''} as Authorization: Bearer …`,
    )
  }
}
