/**
 * What a connector can ask Vault for, each as a LeaseProvider: a KV v2 secret (pinned or latest
 * version, cached briefly), a dynamic secret from any engine path that returns a lease, a Vault
 * token minted for the scope, or a signed identity token. Response fields become the credential's
 * named fields, which the connector's injection template places.
 */
import type { Lease, LeaseProvider } from '../lease-cache.ts'
import { Secret } from '../secret.ts'
import { isValidFieldValue } from '../source.ts'
import { VaultError, type VaultEnvelope } from './vault-client.ts'
import type { VaultSession } from './vault-session.ts'

export interface VaultKvSpec {
  readonly mount: string
  readonly path: string
  readonly version: number | null
  readonly field: string | null
  readonly cacheMs: number
}

export interface VaultDynamicSpec {
  readonly path: string
  readonly method: 'GET' | 'POST'
  readonly params: Readonly<Record<string, unknown>> | null
  readonly field: string | null
}

export interface VaultTokenSpec {
  /** A token role (auth/token/roles/<role>) whose allowed_policies include `policies`; without one, Vault only lets Corridor mint subsets of its own policies. */
  readonly role: string | null
  readonly policies: readonly string[]
  readonly ttl: string
  readonly numUses: number
  readonly connectorId: string
}

export interface VaultIdentitySpec {
  readonly role: string
}

/** What every Vault provider holds: Corridor's session, its connector's spec, the clock. */
abstract class VaultProvider<Spec> implements LeaseProvider {
  readonly session: VaultSession
  readonly spec: Spec
  readonly now: () => number

  constructor(session: VaultSession, spec: Spec, now: () => number) {
    this.session = session
    this.spec = spec
    this.now = now
  }

  abstract obtain(scope: string, signal: AbortSignal): Promise<Lease>
}

export class VaultKvProvider extends VaultProvider<VaultKvSpec> {
  async obtain(_scope: string, signal: AbortSignal): Promise<Lease> {
    const { mount, path, version, field, cacheMs } = this.spec
    const envelope = await this.session.call(
      'GET',
      `${mount}/data/${path}${version === null ? '' : `?version=${version}`}`,
      undefined,
      signal,
    )
    const data = envelope?.data
    const values = data?.data
    const meta = data?.metadata as { version?: unknown } | undefined
    if (typeof values !== 'object' || values === null)
      throw new VaultError('invalid_response', null, `KV secret ${mount}/${path} has no data`)
    const obtainedAt = this.now()
    return {
      credential: {
        fields: fieldsOf(values as Record<string, unknown>, field),
        reference: `vault:${mount}/${path}@v${String(meta?.version ?? version ?? '?')}`,
        leaseId: null,
      },
      obtainedAt,
      expiresAt: obtainedAt + cacheMs,
      renewable: false,
    }
  }
}

export class VaultDynamicProvider extends VaultProvider<VaultDynamicSpec> {
  async obtain(_scope: string, signal: AbortSignal): Promise<Lease> {
    const { path, method, params, field } = this.spec
    const envelope = requireEnvelope(await this.session.call(method, path, params ?? undefined, signal), path)
    if (envelope.data === null) throw new VaultError('invalid_response', null, `${path} returned no data`)
    if (envelope.lease_id === '' || envelope.lease_duration <= 0)
      throw new VaultError('invalid_response', null, `${path} returned no lease; use a KV source for static secrets`)
    const obtainedAt = this.now()
    return {
      credential: { fields: fieldsOf(envelope.data, field), reference: `vault:${path}`, leaseId: envelope.lease_id },
      obtainedAt,
      expiresAt: obtainedAt + envelope.lease_duration * 1000,
      renewable: envelope.renewable,
    }
  }

  async renew(lease: Lease, signal: AbortSignal): Promise<Lease> {
    const increment = Math.round((lease.expiresAt - lease.obtainedAt) / 1000)
    const envelope = requireEnvelope(
      await this.session.call('POST', 'sys/leases/renew', { lease_id: lease.credential.leaseId, increment }, signal),
      'sys/leases/renew',
    )
    const now = this.now()
    // The answer is authoritative: Vault may cap the renewal at the max TTL.
    return {
      credential: lease.credential,
      obtainedAt: now,
      expiresAt: now + envelope.lease_duration * 1000,
      renewable: envelope.renewable,
    }
  }

  async revoke(lease: Lease): Promise<void> {
    await this.session.call(
      'POST',
      'sys/leases/revoke',
      { lease_id: lease.credential.leaseId },
      AbortSignal.timeout(this.session.client.timeoutMs),
    )
  }
}

export class VaultTokenProvider extends VaultProvider<VaultTokenSpec> {
  async obtain(scope: string, signal: AbortSignal): Promise<Lease> {
    const { role, policies, ttl, numUses, connectorId } = this.spec
    const agent = scope.startsWith('agent:') ? scope.slice(6) : null
    const path = role === null ? 'auth/token/create' : `auth/token/create/${role}`
    const envelope = requireEnvelope(
      await this.session.call(
        'POST',
        path,
        {
          policies,
          ttl,
          num_uses: numUses,
          renewable: false,
          no_default_policy: true,
          display_name: `corridor-${connectorId}`,
          meta: { corridor_connector: connectorId, ...(agent === null ? {} : { corridor_agent: agent }) },
        },
        signal,
      ),
      path,
    )
    const auth = envelope.auth
    if (auth === null || typeof auth.client_token !== 'string')
      throw new VaultError('invalid_response', null, `${path} returned no token`)
    const token = checkedSecret(auth.client_token, 'client_token')
    return tokenLease(path, token, `accessor:${auth.accessor}`, this.now(), auth.lease_duration)
  }

  async revoke(lease: Lease): Promise<void> {
    const accessor = (lease.credential.leaseId ?? '').replace(/^accessor:/, '')
    await this.session.call(
      'POST',
      'auth/token/revoke-accessor',
      { accessor },
      AbortSignal.timeout(this.session.client.timeoutMs),
    )
  }
}

export class VaultIdentityProvider extends VaultProvider<VaultIdentitySpec> {
  async obtain(_scope: string, signal: AbortSignal): Promise<Lease> {
    const path = `identity/oidc/token/${this.spec.role}`
    const data = requireEnvelope(await this.session.call('GET', path, undefined, signal), path).data
    if (data === null || typeof data.token !== 'string' || typeof data.ttl !== 'number')
      throw new VaultError('invalid_response', null, `${path} returned no token`)
    return tokenLease(path, checkedSecret(data.token, 'token'), null, this.now(), data.ttl)
  }
}

/** A token Vault issued (a minted token, an identity JWT): placed as `{secret}` or `{token}`, not renewable. */
function tokenLease(path: string, token: Secret, leaseId: string | null, obtainedAt: number, ttlSec: number): Lease {
  return {
    credential: {
      fields: new Map([
        ['secret', token],
        ['token', token],
      ]),
      reference: `vault:${path}`,
      leaseId,
    },
    obtainedAt,
    expiresAt: obtainedAt + ttlSec * 1000,
    renewable: false,
  }
}

function requireEnvelope(envelope: VaultEnvelope | null, path: string): VaultEnvelope {
  if (envelope === null) throw new VaultError('invalid_response', 204, `${path} answered 204 where a body was expected`)
  return envelope
}

/** Scalar fields become named secrets; `secret` is the chosen field, or the only one. */
export function fieldsOf(data: Record<string, unknown>, primary: string | null): Map<string, Secret> {
  const fields = new Map<string, Secret>()
  for (const [name, value] of Object.entries(data)) {
    // Values that cannot be a header (multi-line PEMs…) are left out; a template naming one fails as a missing field.
    if (
      (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') &&
      isValidFieldValue(String(value))
    )
      fields.set(name, new Secret(String(value)))
  }
  if (primary !== null) {
    const value = fields.get(primary)
    if (value === undefined) throw new VaultError('invalid_response', null, `the secret has no field '${primary}'`)
    fields.set('secret', value)
  } else if (!fields.has('secret') && fields.size === 1) {
    fields.set('secret', fields.values().next().value as Secret)
  }
  return fields
}

function checkedSecret(value: string, name: string): Secret {
  if (!isValidFieldValue(value))
    throw new VaultError('invalid_response', null, `field '${name}' is not a valid header value`)
  return new Secret(value)
}
