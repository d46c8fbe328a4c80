/**
 * Places a credential where the connector's template says: a header (with a format such as
 * `Bearer {secret}`), HTTP Basic (`{username}` / `{password}` from a database lease), or a query
 * parameter. This is the one place a secret is revealed, and it writes only into the request
 * that goes to the connector's own upstream.
 */
import type { InjectionSpec, Template } from '../registry/connectors.ts'
import { CorridorError } from '../shared/errors.ts'
import type { IssuedCredential } from './source.ts'

export interface OutgoingRequestParts {
  /** Flat [name, value, name, value, …] list, as undici takes it; the injected header was stripped from the agent's. */
  headers: string[]
  query: string
}

export function injectCredential(spec: InjectionSpec, credential: IssuedCredential, out: OutgoingRequestParts): void {
  switch (spec.kind) {
    case 'header':
      out.headers.push(spec.header, render(spec.value, credential))
      return
    case 'basic': {
      const pair = `${render(spec.username, credential)}:${render(spec.password, credential)}`
      out.headers.push('authorization', 'Basic ' + Buffer.from(pair).toString('base64'))
      return
    }
    case 'query': {
      const pair = encodeURIComponent(spec.param) + '=' + encodeURIComponent(render(spec.value, credential))
      out.query = out.query === '' ? pair : `${out.query}&${pair}`
      return
    }
    case 'none':
      return
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
    if (value === undefined) throw new CorridorError('credential_unavailable', `the credential from ${credential.reference} has no field '${part.field}' for the injection template`)
    out += value.reveal()
  }
  return out
}
