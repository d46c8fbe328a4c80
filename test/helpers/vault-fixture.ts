/**
 * A Vault test server set up the way an operator would set up Vault for Corridor (a policy, an
 * AppRole login, a KV mount, a database role, an OIDC role), plus an upstream that accepts only
 * credentials Vault says are live, so a test can tell a real short-lived credential from a stale one.
 */
import { createLocalJWKSet, jwtVerify } from 'jose'
import { VaultTestServer } from '../../testkit/vault-test-server.ts'
import { startRecordingUpstream, type RecordingUpstream } from './recording-upstream.ts'

/** Least privilege for Corridor's own Vault identity; the README shows the same policy in HCL. */
export const CORRIDOR_VAULT_POLICY = {
  'kv/data/records/*': ['read'],
  'kv/data/oauth/*': ['read'],
  'database/creds/app': ['read'],
  'database/creds/short': ['read'],
  'sys/leases/renew': ['update'],
  'sys/leases/revoke': ['update'],
  'auth/token/create/corridor-minted': ['update'],
  'auth/token/revoke-accessor': ['update'],
  'identity/oidc/token/upstream': ['read'],
} as const

export interface VaultSetup {
  vault: VaultTestServer
  roleId: string
  secretId: string
  oidcClientId: string
}

export async function startVaultForCorridor(
  opts: {
    tokenTtlSec?: number
    dbTtlSec?: number
    dbMaxTtlSec?: number
    shortTtlSec?: number
    /** Serve HTTPS with this certificate and key (PEM), as a production Vault does. */
    tls?: { cert: Buffer; key: Buffer }
  } = {},
): Promise<VaultSetup> {
  const vault = new VaultTestServer(opts.tls === undefined ? {} : { tls: opts.tls })
  await vault.start(0)
  vault.setPolicy('corridor', CORRIDOR_VAULT_POLICY as never)
  vault.setPolicy('records-read', { 'kv/data/records/*': ['read'] })
  vault.addTokenRole('corridor-minted', { allowedPolicies: ['records-read'] })
  vault.enableKv('kv')
  vault.addDynamicRole('database', 'app', {
    ttlSec: opts.dbTtlSec ?? 60,
    maxTtlSec: opts.dbMaxTtlSec ?? 600,
    renewable: true,
    kind: 'database',
  })
  vault.addDynamicRole('database', 'short', {
    ttlSec: opts.shortTtlSec ?? 2,
    maxTtlSec: opts.shortTtlSec ?? 2,
    renewable: false,
    kind: 'database',
  })
  const { roleId, secretId } = vault.addAppRole('corridor', ['corridor'], opts.tokenTtlSec ?? 300)
  const { clientId } = await vault.addOidcRole('upstream', 60)
  return { vault, roleId, secretId, oidcClientId: clientId }
}

export function vaultConfigYaml(setup: VaultSetup, extra = ''): string {
  return `vault:
  address: ${setup.vault.address}
${extra}  auth:
    method: approle
    role_id: ${setup.roleId}
    secret_id_env: CORRIDOR_SECRET_ID
`
}

export interface CheckedCall {
  /** What the upstream concluded about the credential it received. */
  verdict: 'live' | 'stale' | 'none'
  path: string
}

/**
 * An upstream that checks every credential against Vault: Basic passwords and bearer tokens must
 * be live in Vault, identity JWTs must verify against Vault's JWKS. Stale ones get 401.
 */
export async function startCheckingUpstream(
  setup: VaultSetup,
  staticSecrets: readonly string[] = [],
): Promise<RecordingUpstream & { verdicts: CheckedCall[] }> {
  const verdicts: CheckedCall[] = []
  const upstream = await startRecordingUpstream((req, res) => {
    void (async () => {
      const auth = String(req.headers.authorization ?? req.headers['x-vault-token'] ?? '')
      let credential = ''
      if (auth.startsWith('Basic '))
        credential = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':').slice(1).join(':')
      else if (auth.startsWith('Bearer ')) credential = auth.slice(7)
      else credential = auth
      let verdict: CheckedCall['verdict'] = 'none'
      if (credential !== '') {
        if (staticSecrets.includes(credential) || setup.vault.isLive(credential)) verdict = 'live'
        else if (credential.split('.').length === 3) {
          try {
            await jwtVerify(credential, createLocalJWKSet(setup.vault.oidcJwks()), { audience: setup.oidcClientId })
            verdict = 'live'
          } catch {
            verdict = 'stale'
          }
        } else verdict = 'stale'
      }
      verdicts.push({ verdict, path: req.url })
      res.writeHead(verdict === 'live' ? 200 : 401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ verdict }))
    })()
  })
  return Object.assign(upstream, { verdicts })
}
