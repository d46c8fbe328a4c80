/**
 * What the contract suite runs against: Corridor's Vault-API-compatible test server by default,
 * or a real Vault when VAULT_ADDR and VAULT_TOKEN are set (a dev server is enough:
 * `vault server -dev`). Setup goes through the target's own means: the test server's JS API, or
 * Vault's HTTP API with the given (root-capable) token, on mounts named uniquely per run.
 */
import { randomBytes } from 'node:crypto'
import { VaultTestServer } from '../../testkit/vault-test-server.ts'

export interface VaultTarget {
  readonly kind: 'test-server' | 'real-vault'
  readonly address: string
  readonly rootToken: string
  /** A KV v2 mount for this run. */
  readonly kvMount: string
  /** An engine path that returns a renewable lease (database/creds/<role> or similar), or null if the target has none. */
  readonly dynamicPath: string | null
  /** Writes an ACL policy granting `paths` (all capabilities listed). */
  setPolicy(name: string, rules: Record<string, readonly string[]>): Promise<void>
  /** Creates an AppRole role and returns its credentials. */
  appRole(
    name: string,
    policies: string[],
    ttlSec: number,
  ): Promise<{ roleId: string; secretId: string; mount: string }>
  /** The test server, for fault switches; null against a real Vault. */
  readonly server: VaultTestServer | null
  close(): Promise<void>
}

export async function openVaultTarget(env: NodeJS.ProcessEnv = process.env): Promise<VaultTarget> {
  const runId = randomBytes(4).toString('hex')
  if (env.VAULT_ADDR && env.VAULT_TOKEN)
    return openRealVault(env.VAULT_ADDR, env.VAULT_TOKEN, runId, env.VAULT_CONTRACT_DYNAMIC_PATH ?? null)
  const server = new VaultTestServer()
  await server.start(0)
  const kvMount = `kv-${runId}`
  server.enableKv(kvMount)
  server.addDynamicRole('database', 'readonly', { ttlSec: 60, maxTtlSec: 120, renewable: true, kind: 'database' })
  return {
    kind: 'test-server',
    address: server.address,
    rootToken: server.rootToken,
    kvMount,
    dynamicPath: 'database/creds/readonly',
    async setPolicy(name, rules) {
      server.setPolicy(name, rules as never)
    },
    async appRole(name, policies, ttlSec) {
      return { ...server.addAppRole(name, policies, ttlSec), mount: 'approle' }
    },
    server,
    close: () => server.stop(),
  }
}

async function openRealVault(
  address: string,
  rootToken: string,
  runId: string,
  dynamicPath: string | null,
): Promise<VaultTarget> {
  const call = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown> | null> => {
    const res = await fetch(`${address}/v1/${path}`, {
      method,
      headers: { 'x-vault-token': rootToken, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    if (res.status >= 400) throw new Error(`setup ${method} ${path} → ${res.status} ${text}`)
    return text === '' ? null : (JSON.parse(text) as Record<string, unknown>)
  }
  const kvMount = `corridor-contract-kv-${runId}`
  const approleMount = `corridor-contract-approle-${runId}`
  await call('POST', `sys/mounts/${kvMount}`, { type: 'kv', options: { version: '2' } })
  await call('POST', `sys/auth/${approleMount}`, { type: 'approle' })
  return {
    kind: 'real-vault',
    address,
    rootToken,
    kvMount,
    dynamicPath,
    async setPolicy(name, rules) {
      const hcl = Object.entries(rules)
        .map(([path, caps]) => `path "${path}" { capabilities = [${caps.map((c) => `"${c}"`).join(', ')}] }`)
        .join('\n')
      await call('POST', `sys/policies/acl/${name}`, { policy: hcl })
    },
    async appRole(name, policies, ttlSec) {
      await call('POST', `auth/${approleMount}/role/${name}`, {
        token_policies: policies,
        token_ttl: ttlSec,
        token_max_ttl: ttlSec * 10,
      })
      const roleId = (await call('GET', `auth/${approleMount}/role/${name}/role-id`))?.data as { role_id: string }
      const secretId = (await call('POST', `auth/${approleMount}/role/${name}/secret-id`))?.data as {
        secret_id: string
      }
      return { roleId: roleId.role_id, secretId: secretId.secret_id, mount: approleMount }
    },
    server: null,
    async close() {
      await call('DELETE', `sys/mounts/${kvMount}`).catch(() => {})
      await call('DELETE', `sys/auth/${approleMount}`).catch(() => {})
    },
  }
}
