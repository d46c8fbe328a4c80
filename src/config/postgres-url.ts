/**
 * Whether the audit store's connection would carry the trail in clear, judged as node-postgres
 * will connect: its own reading of the URL (`sslmode`, `ssl`, a `host` parameter that overrides the
 * URL's host, `uselibpqcompat`), then of PGHOST and PGSSLMODE. Whatever a later version of the
 * driver makes of an `sslmode`, this follows it.
 */
import ConnectionParameters from 'pg/lib/connection-parameters'
import { isLoopbackHost } from '../shared/in-clear.ts'

/** Whether the connection would be in clear, or why node-postgres refuses the URL. */
export type PostgresReading = { readonly inClear: boolean } | { readonly unreadable: string }

/**
 * In clear: beyond loopback and outside a Unix socket, with no TLS, or with TLS whose certificate
 * goes unchecked (`sslmode=no-verify`; libpq's `require` under `uselibpqcompat`; a name left
 * unchecked with no CA of its own, which any certificate a public CA signed would pass: the
 * driver refuses libpq's `verify-ca` so itself today).
 */
export function readPostgresUrl(url: string): PostgresReading {
  let params: ConnectionParameters
  try {
    params = new ConnectionParameters(url)
  } catch (err) {
    // The driver's own words (a file it cannot read, a mode it will not use), unless they repeat the URL or its password.
    const message = err instanceof Error ? err.message : String(err)
    const password = URL.canParse(url) ? new URL(url).password : ''
    const repeats = message.includes(url) || (password !== '' && message.includes(password))
    return { unreadable: repeats ? 'node-postgres cannot read it' : `node-postgres refuses it: ${message}` }
  }
  if (params.isDomainSocket === true || isLoopbackHost(params.host ?? 'localhost')) return { inClear: false }
  const ssl = params.ssl
  if (ssl === undefined || ssl === false) return { inClear: true }
  if (ssl === true) return { inClear: false }
  const unchecked = ssl.rejectUnauthorized === false || (ssl.checkServerIdentity !== undefined && ssl.ca === undefined)
  return { inClear: unchecked }
}
