/** Throwaway certificates for TLS tests, made with the openssl command line. */
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

export type Certificates = Record<'ca' | 'cert' | 'key' | 'clientCert' | 'clientKey', string>

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
export function makeCertificates(dir: string): Certificates {
  const f = (name: string) => join(dir, name)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
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
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', true],
    ['client', 'alice', false],
  ] as const) {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.csr`),
    )
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
      ...(ext ? ['-extfile', f('san.ext')] : []),
    )
  }
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
  const f = (name: string) => join(dir, name)
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  ssl(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('renewed.key'),
    '-out',
    f('renewed.csr'),
  )
  ssl(
    'x509',
    '-req',
    '-in',
    f('renewed.csr'),
    '-CA',
    certs.ca,
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    f('renewed.pem'),
    '-extfile',
    f('san.ext'),
  )
  // Key first, then certificate: a reload between the two writes fails the pair check and keeps the old one.
  execFileSync('cp', [f('renewed.key'), certs.key])
  execFileSync('cp', [f('renewed.pem'), certs.cert])
}
