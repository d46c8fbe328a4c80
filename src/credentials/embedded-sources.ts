/**
 * The embedded credential sources: an environment variable (read once, at start) and a file
 * (re-read after a short cache, so a rotated secret is picked up without a restart).
 */
import { readFileSync } from 'node:fs'
import type { CredentialSourceSpec } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { Secret } from './secret.ts'
import { isValidFieldValue, type CredentialSource, type IssuedCredential } from './source.ts'

function checked(value: string, reference: string): IssuedCredential {
  if (value === '' || !isValidFieldValue(value)) {
    throw new CorridorError('credential_unavailable', `the credential from ${reference} is empty or not a valid header value`)
  }
  return { secret: new Secret(value), reference, leaseId: null }
}

export class EnvCredentialSource implements CredentialSource {
  readonly #credential: IssuedCredential | null
  readonly #reference: string

  constructor(name: string, env: Readonly<Record<string, string | undefined>>) {
    this.#reference = `env:${name}`
    const value = env[name]
    this.#credential = value === undefined ? null : checked(value.trim(), this.#reference)
  }

  issue(): IssuedCredential {
    if (this.#credential === null) throw new CorridorError('credential_unavailable', `the credential source ${this.#reference} is not set`)
    return this.#credential
  }
}

export class FileCredentialSource implements CredentialSource {
  readonly #path: string
  readonly #cacheMs: number
  readonly #now: () => number
  #cached: { credential: IssuedCredential; until: number } | null = null

  constructor(path: string, cacheMs: number, now: () => number = Date.now) {
    this.#path = path
    this.#cacheMs = cacheMs
    this.#now = now
  }

  issue(): IssuedCredential {
    const now = this.#now()
    if (this.#cached !== null && this.#cached.until > now) return this.#cached.credential
    let text: string
    try {
      text = readFileSync(this.#path, 'utf8')
    } catch (err) {
      this.#cached = null
      throw new CorridorError('credential_unavailable', `the credential file for this connector cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    const credential = checked(text.trim(), `file:${this.#path}`)
    this.#cached = { credential, until: now + this.#cacheMs }
    return credential
  }
}

export class NoCredentialSource implements CredentialSource {
  issue(): IssuedCredential {
    throw new CorridorError('credential_unavailable', 'this connector has no credential source configured')
  }
}

export function createEmbeddedSource(spec: CredentialSourceSpec, env: Readonly<Record<string, string | undefined>>): CredentialSource | null {
  switch (spec.kind) {
    case 'env':
      return new EnvCredentialSource(spec.name, env)
    case 'file':
      return new FileCredentialSource(spec.path, spec.cacheMs)
    case 'none':
      return null
  }
}
