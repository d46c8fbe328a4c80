/**
 * Places a credential where the connector's template says: a header (with a format such as
 * `Bearer {secret}`), HTTP Basic, or a query parameter. This is the one place a secret is
 * revealed, and it writes only into the request that goes to the connector's own upstream.
 */
import type { InjectionSpec } from '../registry/connectors.ts'
import type { Secret } from './secret.ts'

export interface OutgoingRequestParts {
  /** Flat [name, value, name, value, …] list, as undici takes it; the injected header was stripped from the agent's. */
  headers: string[]
  query: string
}

export function injectCredential(spec: InjectionSpec, secret: Secret, out: OutgoingRequestParts): void {
  switch (spec.kind) {
    case 'header':
      out.headers.push(spec.header, spec.prefix + secret.reveal() + spec.suffix)
      return
    case 'basic': {
      const user = spec.username ?? secret.reveal()
      const password = spec.password ?? secret.reveal()
      out.headers.push('authorization', 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64'))
      return
    }
    case 'query': {
      const pair = encodeURIComponent(spec.param) + '=' + encodeURIComponent(secret.reveal())
      out.query = out.query === '' ? pair : `${out.query}&${pair}`
      return
    }
    case 'none':
      return
  }
}
