/**
 * Authenticates approvers on the admin API: an approver key from the registry (stored as a
 * SHA-256 hash, like agent keys) or a JWT from the company's IdP whose groups claim names the
 * approver groups. Agent keys are never approver credentials.
 */
import type { ApproverTokenConfig } from '../config/server-config.ts'
import { JwtVerifier } from '../identity/jwt-verifier.ts'
import type { PolicyBundle } from '../policy/bundle.ts'
import { APPROVER_KEY_PREFIX, hashApiKey } from '../registry/agents.ts'
import { CorridorError } from '../shared/errors.ts'
import type { ApproverIdentity } from './eligibility.ts'

export class ApproverAuthenticator {
  readonly #jwt: JwtVerifier | null
  readonly #config: ApproverTokenConfig | null

  constructor(config: ApproverTokenConfig | null) {
    this.#config = config
    this.#jwt = config === null ? null : new JwtVerifier(config, 'approver_unauthenticated')
  }

  async authenticate(authorization: string | undefined, bundle: PolicyBundle): Promise<ApproverIdentity> {
    const m = authorization === undefined ? null : /^Bearer ([!-~]+)$/i.exec(authorization)
    if (m === null)
      throw new CorridorError(
        'approver_unauthenticated',
        'send an approver key or IdP token as Authorization: Bearer …',
      )
    const token = m[1] as string
    if (token.startsWith(APPROVER_KEY_PREFIX)) {
      const approver = bundle.registry.approverKeys.get(hashApiKey(token))
      if (approver === undefined) throw new CorridorError('approver_unauthenticated', 'unknown approver key')
      return { id: approver.id, groups: approver.groups, via: 'approver_key' }
    }
    if (this.#jwt === null || this.#config === null)
      throw new CorridorError(
        'approver_unauthenticated',
        'IdP tokens for approvers are not enabled (identity.approver_jwt)',
      )
    const payload = await this.#jwt.verify(token)
    const id = payload[this.#config.idClaim]
    const groups = payload[this.#config.groupsClaim]
    if (typeof id !== 'string' || id === '')
      throw new CorridorError('approver_unauthenticated', `the token has no '${this.#config.idClaim}' claim`)
    const list = Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : []
    return { id, groups: list, via: this.#config.issuer }
  }
}
