/**
 * Who is calling, and for whom: resolves the agent credential to a registered agent (API key
 * hash or verified JWT whose `sub` is the agent id) and, when present, the delegated user's
 * token to a subject and groups.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { JwtIssuerConfig, UserTokenConfig } from '../config/server-config.ts'
import type { PolicyBundle } from '../policy/bundle.ts'
import type { DelegatedUser } from '../policy/facts.ts'
import { API_KEY_PREFIX, hashApiKey, type Agent } from '../registry/agents.ts'
import { CorridorError } from '../shared/errors.ts'
import { extractAgentCredential } from './agent-credential.ts'
import { JwtVerifier } from './jwt-verifier.ts'

const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

export class Identifier {
  readonly #agentJwt: JwtVerifier | null
  readonly #userJwt: JwtVerifier | null
  readonly #userHeader: string | null
  readonly #groupsClaim: string

  constructor(agentJwt: JwtIssuerConfig | null, userJwt: UserTokenConfig | null) {
    this.#agentJwt = agentJwt ? new JwtVerifier(agentJwt) : null
    this.#userJwt = userJwt ? new JwtVerifier(userJwt, 'user_token_invalid') : null
    this.#userHeader = userJwt?.header ?? null
    this.#groupsClaim = userJwt?.groupsClaim ?? 'groups'
  }

  /** The header that carries a delegated user token, if configured. */
  get userHeader(): string | null {
    return this.#userHeader
  }

  /**
   * The registered agent, and the credential it presented (which must not be forwarded anywhere):
   * from Authorization, or from `keyHeader` (the header a connector's SDKs put their key in).
   */
  async agent(
    headers: IncomingHttpHeaders,
    keyHeader: string | null,
    bundle: PolicyBundle,
    nowMs: number,
  ): Promise<{ agent: Agent; presented: string }> {
    const credential = extractAgentCredential(headers, keyHeader)
    if (credential === null)
      throw new CorridorError(
        'identity_missing',
        'send your Corridor agent credential as the API key (Authorization: Bearer …)',
      )
    let agentId: string | undefined
    if (credential.startsWith(API_KEY_PREFIX)) {
      agentId = bundle.registry.keyHashes.get(hashApiKey(credential))
      if (agentId === undefined) throw new CorridorError('identity_invalid', 'unknown agent API key')
    } else if (JWT_SHAPE.test(credential)) {
      if (this.#agentJwt === null) throw new CorridorError('identity_invalid', 'JWT agent credentials are not enabled')
      const payload = await this.#agentJwt.verify(credential, nowMs)
      agentId = payload.sub
    } else {
      throw new CorridorError('identity_invalid', 'the credential is neither a Corridor API key nor a JWT')
    }
    const agent = agentId === undefined ? undefined : bundle.registry.agents.get(agentId)
    if (agent === undefined) throw new CorridorError('identity_invalid', 'the credential names no registered agent')
    return { agent, presented: credential }
  }

  async user(headers: IncomingHttpHeaders, nowMs: number): Promise<DelegatedUser | null> {
    if (this.#userHeader === null) {
      if (headers['x-corridor-user'] !== undefined)
        throw new CorridorError('user_token_invalid', 'delegated user tokens are not enabled')
      return null
    }
    const token = headers[this.#userHeader]
    if (token === undefined) return null
    if (typeof token !== 'string' || !JWT_SHAPE.test(token))
      throw new CorridorError('user_token_invalid', 'the delegated user token is not a JWT')
    const payload = await (this.#userJwt as JwtVerifier).verify(token, nowMs)
    const groups = payload[this.#groupsClaim] ?? []
    if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string')) {
      throw new CorridorError('user_token_invalid', `the '${this.#groupsClaim}' claim must be a list of strings`)
    }
    return { id: payload.sub as string, groups: groups as string[] }
  }
}
