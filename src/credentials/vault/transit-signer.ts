/**
 * Audit checkpoints signed by an ed25519 key in Vault's transit engine, so that the private key
 * never sits on Corridor's host: Corridor's token only asks Vault to sign (`update` on
 * `<mount>/sign/<key>`), and verifiers read the public key from Vault (`read` on
 * `<mount>/keys/<key>`). Each call has the Vault client's timeout; a checkpoint Vault does not
 * sign in time stays unsigned, and `corridor audit verify` names it.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import type { VaultSession } from './vault-session.ts'

/** `vault:v<version>:<base64 signature>`, as transit answers. */
const TRANSIT_SIGNATURE = /^vault:v(\d{1,9}):([A-Za-z0-9+/]+={0,2})$/

export class TransitSigner {
  readonly #session: VaultSession
  readonly #mount: string
  readonly #key: string

  constructor(session: VaultSession, mount: string, key: string) {
    this.#session = session
    this.#mount = mount.replace(/^\/+|\/+$/g, '')
    this.#key = encodeURIComponent(key)
  }

  /** The base64 Ed25519 signature of `payload` (as a key file would give it) and the key version that made it. */
  async sign(payload: Buffer): Promise<{ signature: string; keyVersion: number }> {
    const envelope = await this.#session.call(
      'POST',
      `${this.#mount}/sign/${this.#key}`,
      { input: payload.toString('base64') },
      AbortSignal.timeout(this.#session.client.timeoutMs),
    )
    const signature = envelope?.data?.['signature']
    const m = typeof signature === 'string' ? TRANSIT_SIGNATURE.exec(signature) : null
    if (m === null) throw new Error('Vault transit answered without a signature')
    return { signature: m[2] as string, keyVersion: Number(m[1]) }
  }

  /** The public key of the key's latest version (or `version`), for `corridor audit public-key`. */
  async publicKey(version?: number): Promise<KeyObject> {
    const envelope = await this.#session.call(
      'GET',
      `${this.#mount}/keys/${this.#key}`,
      null,
      AbortSignal.timeout(this.#session.client.timeoutMs),
    )
    const data = envelope?.data ?? {}
    if (data['type'] !== 'ed25519') throw new Error(`transit key is of type ${String(data['type'])}, not ed25519`)
    const wanted = String(version ?? data['latest_version'])
    const keys = (data['keys'] ?? {}) as Record<string, { public_key?: unknown } | undefined>
    const raw = keys[wanted]?.public_key
    if (typeof raw !== 'string') throw new Error(`transit key has no public key for version ${wanted}`)
    return createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw, 'base64').toString('base64url') },
      format: 'jwk',
    })
  }
}
