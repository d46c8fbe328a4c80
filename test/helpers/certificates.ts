/** Throwaway certificates for TLS tests, made with the openssl command line. */
import { execFileSync } from 'node:child_process'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export type Certificates = Record<'ca' | 'cert' | 'key' | 'clientCert' | 'clientKey', string>

const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' })
const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

/** A new key and a certificate for it, `name`.key and `name`.pem in `dir`, issued by the CA there. */
function issue(dir: string, name: string, commonName: string, forServer: boolean): void {
  const f = (file: string) => join(dir, file)
  ssl('req', ...P256, '-subj', `/CN=${commonName}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`))
  ssl(
    'x509',
    '-req',
    '-in',
    f(`${name}.csr`),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    f(`${name}.pem`),
    ...(forServer ? ['-extfile', f('san.ext')] : []),
  )
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate. */
export function makeCertificates(dir: string): Certificates {
  const f = (name: string) => join(dir, name)
  ssl(
    'req',
    '-x509',
    ...P256,
    '-days',
    '2',
    '-subj',
    '/CN=corridor test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  )
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  issue(dir, 'server', '127.0.0.1', true)
  issue(dir, 'client', 'alice', false)
  return {
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  }
}

/** Issues a new server certificate (new key, new serial) from the same CA, over the files of `certs`. */
export function renewServerCertificate(dir: string, certs: Certificates): void {
  issue(dir, 'renewed', '127.0.0.1', true)
  // Key first, then certificate: a reload between the two writes fails the pair check and keeps the old one.
  copyFileSync(join(dir, 'renewed.key'), certs.key)
  copyFileSync(join(dir, 'renewed.pem'), certs.cert)
}
