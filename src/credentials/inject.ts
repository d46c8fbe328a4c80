/**
 * Places a credential where the connector's template says: a header (with a format such as
 * `Bearer {secret}`), HTTP Basic (`{username}` / `{password}` from a database lease), or a query
 * parameter. This is the one place a secret is revealed, and it writes only into the request
 * that goes to the connector's own upstream.
 */
import type { InjectionSpec, Template } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import { SecretMask } from '../request/secret-mask.ts'
import type { IssuedCredential } from './source.ts'

/** The request as it leaves, into which the credential is placed. */
export interface OutgoingParts {
  /** Flat [name, value, name, value, …] list, as undici takes it. */
  headers: string[]
  /** Query string without '?', strictly encoded. */
  query: string
}

/** One mask per issued credential (a lease is reused by many requests; its needles are computed once). */
const masks = new WeakMap<IssuedCredential, SecretMask>()

/**
 * Places the credential and returns the mask for the response: every value placed, and every
 * secret field it was built from, is masked in what the upstream sends back.
 */
export function injectCredential(spec: InjectionSpec, credential: IssuedCredential, out: OutgoingParts): SecretMask {
  let placed: string
  switch (spec.kind) {
    case 'header':
      placed = render(spec.value, credential)
      out.headers.push(spec.header, placed)
      break
    case 'basic': {
      const pair = `${render(spec.username, credential)}:${render(spec.password, credential)}`
      placed = Buffer.from(pair).toString('base64')
      out.headers.push('authorization', 'Basic ' + placed)
      break
    }
    case 'query': {
      placed = render(spec.value, credential)
      const pair = encodeURIComponent(spec.param) + '=' + encodeURIComponent(placed)
      out.query = out.query === '' ? pair : `${out.query}&${pair}`
      break
    }
    case 'none':
      return maskFor(spec, credential, [])
  }
  return maskFor(spec, credential, [placed])
}

function maskFor(spec: InjectionSpec, credential: IssuedCredential, placed: readonly string[]): SecretMask {
  const cached = masks.get(credential)
  if (cached !== undefined) return cached
  const secrets = [...placed]
  for (const template of templatesOf(spec))
    for (const part of template)
      if (typeof part !== 'string') secrets.push(credential.fields.get(part.field)?.reveal() ?? '')
  const mask = new SecretMask(secrets)
  masks.set(credential, mask)
  return mask
}

function templatesOf(spec: InjectionSpec): readonly Template[] {
  switch (spec.kind) {
    case 'header':
    case 'query':
      return [spec.value]
    case 'basic':
      return [spec.username, spec.password]
    case 'none':
      return []
  }
}

function render(template: Template, credential: IssuedCredential): string {
  // The common case, a bare '{secret}' or 'Bearer {secret}', builds one string.
  let out = ''
  for (const part of template) {
    if (typeof part === 'string') {
      out += part
      continue
    }
    const value = credential.fields.get(part.field)
    if (value === undefined)
      throw new CorridorError(
        'credential_unavailable',
        `the credential from ${credential.reference} has no field '${part.field}' for the injection template`,
      )
    out += value.reveal()
  }
  return out
}
