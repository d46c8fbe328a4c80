/**
 * Hands out each connector's credential from the source its catalog entry names, within a
 * bounded time (vault.timeout, 2.5 s by default). Sources are rebuilt when the catalog changes
 * (a replaced source revokes its leases); a missing or failing source is an error at request
 * time (fail closed), never a request sent without a credential.
 */
import type { Connector, ConnectorCatalog, CredentialSourceSpec, SecretInputSpec } from '../registry/connectors.ts'
import { CorridorError, isCorridorError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { CallLog } from '../shared/trace-context.ts'
import { EnvCredentialSource, FileCredentialSource } from './embedded-sources.ts'
import type { LeaseProvider } from './lease-cache.ts'
import type { CredentialScope } from '../registry/connectors.ts'
import { LeasingSource } from './leasing-source.ts'
import { OAuth2Error, OAuth2Provider, type OAuth2ErrorCode } from './oauth2-source.ts'
import type { CredentialSource, HeldCredential } from './source.ts'
import { VaultError, type VaultErrorCode } from './vault/vault-client.ts'
import type { VaultSession } from './vault/vault-session.ts'
import {
  VaultDynamicProvider,
  VaultIdentityProvider,
  VaultKvProvider,
  VaultTokenProvider,
} from './vault/vault-sources.ts'

export interface BrokerOptions {
  readonly env: Readonly<Record<string, string | undefined>>
  /** Null when corridor.yaml has no `vault` section: vault_* sources then fail closed. */
  readonly vault: VaultSession | null
  readonly log: Logger
  readonly now: () => number
  /** The bound on issuing one credential, Vault login included. */
  readonly issueTimeoutMs: number
}

interface SourceEntry {
  readonly key: string
  readonly source: CredentialSource | null
}

export class CredentialBroker {
  readonly #options: BrokerOptions
  #sources = new Map<string, SourceEntry>()

  constructor(options: BrokerOptions) {
    this.#options = options
  }

  /** Brings sources in line with the catalog (kept when a connector's credential spec is unchanged). */
  sync(catalog: ConnectorCatalog): void {
    const next = new Map<string, SourceEntry>()
    for (const connector of catalog.connectors.values()) {
      const key = JSON.stringify([connector.credential, connector.refreshOnReject])
      const existing = this.#sources.get(connector.id)
      next.set(
        connector.id,
        existing !== undefined && existing.key === key ? existing : { key, source: this.#create(connector) },
      )
    }
    for (const [id, old] of this.#sources) if (next.get(id) !== old) void old.source?.close?.()
    this.#sources = next
  }

  /**
   * Null when the connector needs no credential. Throws CorridorError('credential_unavailable')
   * whose cause says why (a VaultError, an OAuth2Error, a timeout).
   */
  async issue(
    connector: Connector,
    agentId: string,
    perRequest: boolean,
    callLog: CallLog | null = null,
  ): Promise<HeldCredential | null> {
    const entry = this.#sources.get(connector.id)
    if (entry === undefined)
      throw new CorridorError('credential_unavailable', `no credential source for connector '${connector.id}'`)
    if (entry.source === null) return null
    try {
      return await entry.source.issue({ agentId, perRequest, timeoutMs: this.#options.issueTimeoutMs, callLog })
    } catch (err) {
      throw new CorridorError(
        'credential_unavailable',
        `the credential for connector '${connector.id}' is unavailable; nothing was forwarded`,
        { cause: err },
      )
    }
  }

  /**
   * A stop took back credentials: the leases held for `agents` (null: all) on `connectors` (null:
   * all) are revoked in their source and dropped from the caches. How many were revoked (with
   * dryRun, how many would be).
   */
  async revoke(
    connectors: ReadonlySet<string> | null,
    agents: ReadonlySet<string> | null,
    dryRun = false,
  ): Promise<number> {
    const counts = await Promise.all(
      [...this.#sources]
        .filter(([id]) => connectors === null || connectors.has(id))
        .map(([, e]) => e.source?.revoke?.(agents, dryRun) ?? 0),
    )
    return counts.reduce((a, b) => a + b, 0)
  }

  /** Revokes every lease the sources hold (shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.#sources.values()].map((e) => e.source?.close?.()))
  }

  #create(connector: Connector): CredentialSource | null {
    const spec = connector.credential
    if (spec.kind === 'none') return null
    if (spec.kind === 'env' || spec.kind === 'file' || spec.kind === 'vault_kv')
      return this.#secretInput(spec, connector)
    if (spec.kind === 'oauth2') {
      const provider = new OAuth2Provider(
        { ...spec, timeoutMs: this.#options.issueTimeoutMs },
        this.#secretInput(spec.clientSecret, connector),
        this.#options.now,
      )
      // One token serves the connector: the client is Corridor, not the agent.
      return this.#leasing(provider, 'connector', connector)
    }
    const vault = this.#vaultFor(connector)
    if (vault === null) return unconfiguredVault(connector)
    return this.#leasing(vaultProvider(spec, vault, connector, this.#options.now), spec.scope, connector)
  }

  #leasing(provider: LeaseProvider, scope: CredentialScope, connector: Connector): LeasingSource {
    const { now, log, issueTimeoutMs } = this.#options
    return new LeasingSource(provider, {
      scope,
      refreshOnReject: connector.refreshOnReject,
      now,
      log,
      timeoutMs: issueTimeoutMs,
    })
  }

  #secretInput(spec: SecretInputSpec, connector: Connector): CredentialSource {
    switch (spec.kind) {
      case 'env':
        return new EnvCredentialSource(spec.name, this.#options.env)
      case 'file':
        return new FileCredentialSource(spec.path, spec.cacheMs)
      case 'vault_kv': {
        const vault = this.#vaultFor(connector)
        if (vault === null) return unconfiguredVault(connector)
        return this.#leasing(new VaultKvProvider(vault, spec, this.#options.now), 'connector', connector)
      }
    }
  }

  #vaultFor(connector: Connector): VaultSession | null {
    if (this.#options.vault === null)
      this.#options.log.error(
        { connector: connector.id },
        'connector uses a Vault credential but corridor.yaml has no vault section; its requests will be refused',
      )
    return this.#options.vault
  }
}

function vaultProvider(
  spec: Exclude<CredentialSourceSpec, SecretInputSpec | { kind: 'none' } | { kind: 'oauth2' }>,
  vault: VaultSession,
  connector: Connector,
  now: () => number,
) {
  switch (spec.kind) {
    case 'vault_dynamic':
      return new VaultDynamicProvider(vault, spec, now)
    case 'vault_token':
      return new VaultTokenProvider(vault, { ...spec, connectorId: connector.id }, now)
    case 'vault_identity':
      return new VaultIdentityProvider(vault, spec, now)
  }
}

function unconfiguredVault(connector: Connector): CredentialSource {
  return {
    issue() {
      throw new VaultError(
        'misconfigured',
        null,
        `connector '${connector.id}' uses Vault but corridor.yaml has no vault section`,
      )
    },
  }
}

/** The audit-safe reason a credential could not be issued: vault_sealed, vault_timeout, oauth2_refused… */
export type CredentialFailureCode = VaultErrorCode | OAuth2ErrorCode | 'credential_timeout' | 'credential_source_error'

export function credentialFailureCode(err: unknown): CredentialFailureCode {
  const cause = isCorridorError(err) && err.cause !== undefined ? err.cause : err
  if (cause instanceof VaultError || cause instanceof OAuth2Error) return cause.code
  if (cause instanceof DOMException && (cause.name === 'TimeoutError' || cause.name === 'AbortError'))
    return 'credential_timeout'
  return 'credential_source_error'
}
