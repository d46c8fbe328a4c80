/**
 * Certificates for a TLS listener, read at start and again whenever their files change (a
 * renewed certificate from cert-manager, certbot or a Vault PKI agent applies without a restart).
 * A change that cannot be read, or a key that does not match its certificate, keeps the last good
 * pair in force and is logged: a broken renewal must not take the listener down.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import { createSecureContext, type Server as TlsServer } from 'node:tls'
import type { Logger } from './logger.ts'

/** Where a listener's certificate chain and private key are (PEM files). */
export interface KeyPairFiles {
  readonly certFile: string
  readonly keyFile: string
}

/** Modern defaults: TLS 1.2 and 1.3 only, with Node's own cipher list (AEAD suites first). */
export const TLS_MIN_VERSION = 'TLSv1.2'

export function readKeyPair(tls: KeyPairFiles): { cert: Buffer; key: Buffer } {
  const pair = { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }
  // Throws when the key does not belong to the certificate, before anything is served with them.
  createSecureContext({ ...pair, minVersion: TLS_MIN_VERSION })
  return pair
}

/**
 * Watches the pair's files (polling: renewals often swap a symlink, which file events miss) and
 * serves the new pair; `context` is the rest of the secure context that must survive a reload
 * (a client CA). Stops when the server closes.
 */
export function reloadOnChange(
  server: TlsServer,
  tls: KeyPairFiles,
  log: Logger,
  context: { readonly ca?: Buffer } = {},
  intervalMs = 1_000,
): void {
  const reload = (): void => {
    try {
      server.setSecureContext({ ...context, ...readKeyPair(tls), minVersion: TLS_MIN_VERSION })
      log.info({ certFile: tls.certFile }, 'TLS certificate reloaded')
    } catch (err) {
      log.error(
        { err, certFile: tls.certFile },
        'TLS certificate change could not be loaded; the previous one stays in use',
      )
    }
  }
  const options = { interval: intervalMs, persistent: false }
  watchFile(tls.certFile, options, reload)
  watchFile(tls.keyFile, options, reload)
  server.once('close', () => {
    unwatchFile(tls.certFile, reload)
    unwatchFile(tls.keyFile, reload)
  })
}
