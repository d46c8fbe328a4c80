/**
 * Hands out each connector's credential from the source its catalog entry names. Sources are
 * rebuilt when the catalog changes; a missing source is an error at request time (fail closed),
 * never a request sent without a credential.
 */
import type { Connector, ConnectorCatalog } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { createEmbeddedSource } from './embedded-sources.ts'
import type { CredentialSource, IssuedCredential } from './source.ts'

export class CredentialBroker {
  readonly #env: Readonly<Record<string, string | undefined>>
  #sources = new Map<string, { spec: unknown; source: CredentialSource | null }>()

  constructor(env: Readonly<Record<string, string | undefined>>) {
    this.#env = env
  }

  /** Brings sources in line with the catalog (kept when a connector's credential spec is unchanged). */
  sync(catalog: ConnectorCatalog): void {
    const next = new Map<string, { spec: unknown; source: CredentialSource | null }>()
    for (const connector of catalog.connectors.values()) {
      const existing = this.#sources.get(connector.id)
      const same = existing !== undefined && JSON.stringify(existing.spec) === JSON.stringify(connector.credential)
      next.set(connector.id, same ? existing : { spec: connector.credential, source: createEmbeddedSource(connector.credential, this.#env) })
    }
    this.#sources = next
  }

  /** Null when the connector needs no credential. */
  async issue(connector: Connector, signal?: AbortSignal): Promise<IssuedCredential | null> {
    const entry = this.#sources.get(connector.id)
    if (entry === undefined) throw new CorridorError('credential_unavailable', `no credential source for connector '${connector.id}'`)
    if (entry.source === null) return null
    return entry.source.issue(signal)
  }
}
