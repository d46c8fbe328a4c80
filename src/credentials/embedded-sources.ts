/**
 * The embedded credential sources: an environment variable (read once, at start) and a file
 * (re-read after a short cache, so a rotated secret is picked up without a restart).
 */
import { readFileSync } from 'node:fs'
import { CorridorError } from '../shared/errors.ts'
import { Secret } from './secret.ts'
import { held, isValidFieldValue, type CredentialSource, type HeldCredential } from './source.ts'

function checked(value: string, reference: string): HeldCredential {
  if (value === '' || !isValidFieldValue(value)) {
    throw new CorridorError(
      'credential_unavailable',
      `the credential from ${reference} is empty or not a valid header value`,
    )
  }
  return held({ fields: new Map([['secret', new Secret(value)]]), reference, leaseId: null })
}

export class EnvCredentialSource implements CredentialSource {
  readonly #credential: HeldCredential | null
  readonly #reference: string

  constructor(name: string, env: Readonly<Record<string, string | undefined>>) {
    this.#reference = `env:${name}`
    const value = env[name]
    this.#credential = value === undefined ? null : checked(value.trim(), this.#reference)
  }

  issue(): HeldCredential {
    if (this.#credential === null)
      throw new CorridorError('credential_unavailable', `the credential source ${this.#reference} is not set`)
    return this.#credential
  }
}

export class FileCredentialSource implements CredentialSource {
  readonly #path: string
  readonly #cacheMs: number
  readonly #now: () => number
  #cached: { credential: HeldCredential; until: number } | null = null

  constructor(path: string, cacheMs: number, now: () => number = Date.now) {
    this.#path = path
    this.#cacheMs = cacheMs
    this.#now = now
  }

  issue(): HeldCredential {
    const now = this.#now()
    if (this.#cached !== null && this.#cached.until > now) return this.#cached.credential
    let text: string
    try {
      text = readFileSync(this.#path, 'utf8')
    } catch (err) {
      this.#cached = null
      throw new CorridorError(
        'credential_unavailable',
        `the credential file for this connector cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      )
    }
    const credential = checked(text.trim(), `file:${this.#path}`)
    this.#cached = { credential, until: now + this.#cacheMs }
    return credential
  }
}
