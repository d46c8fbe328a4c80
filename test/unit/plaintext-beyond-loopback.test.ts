/**
 * A credential, or what proves one, crosses the network only over TLS: Vault's address, a JWKS
 * URL, an upstream that receives a credential and an OAuth2 token endpoint are refused as plain
 * HTTP beyond loopback, each with its own line and position, unless the file says so in words.
 * Every spelling of a host is read as the URL parser reads it, as the connection would.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { whyCertificateChecksOff } from '../../src/config/certificate-checks.ts'
import { loadServerConfig } from '../../src/config/server-config.ts'
import { ConfigError, YamlReader } from '../../src/config/yaml-reader.ts'
import { readConnectorCatalog } from '../../src/registry/connectors.ts'
import { isLoopbackHost, sentInClear } from '../../src/shared/http-url.ts'

/** Hosts as a URL may spell them, and whether a connection to them stays on this machine. */
const HOSTS: readonly (readonly [string, boolean])[] = [
  ['127.0.0.1', true],
  ['127.9.8.7', true],
  ['127.1', true], // the parser reads 127.0.0.1
  ['0x7f000001', true],
  ['2130706433', true],
  ['localhost', true],
  ['LOCALHOST', true],
  ['[::1]', true],
  ['[0:0:0:0:0:0:0:1]', true], // the parser reads [::1]
  ['vault.internal', false],
  ['10.0.0.5', false],
  ['0.0.0.0', false],
  ['localhost.', false], // a name to resolve, not the loopback name
  ['localhost.evil.example', false],
  ['127.0.0.1.nip.io', false],
  ['[::ffff:127.0.0.1]', false], // an IPv4-mapped address: not taken on trust
  ['[fe80::1]', false],
]

describe('which URLs send in clear', () => {
  it.each(HOSTS)('http://%s is loopback: %s', (host, loopback) => {
    const url = new URL(`http://${host}:8200/v1`)
    expect(sentInClear(url)).toBe(!loopback)
    expect(isLoopbackHost(url.hostname)).toBe(loopback)
    // TLS is never in clear, wherever it goes.
    expect(sentInClear(new URL(`https://${host}:8200/v1`))).toBe(false)
  })
})

const configWith = (yaml: string): string => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-clear-'))
  writeFileSync(
    join(dir, 'corridor.yaml'),
    `files: { agents: a.yaml, connectors: c.yaml, policy: p.yaml }\naudit: { file: audit.log }\n${yaml}`,
  )
  return join(dir, 'corridor.yaml')
}

/** The issues loading this corridor.yaml reports, one line each; [] when it loads. */
const configIssues = (yaml: string): string[] => {
  try {
    loadServerConfig(configWith(yaml))
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.issues.map((i) => `${i.line}:${i.message}`)
  }
}

describe('corridor.yaml', () => {
  const vault = (address: string, extra = '') =>
    `vault:\n  address: ${address}\n  auth: { method: token, token_env: VAULT_TOKEN }\n${extra}`

  it('refuses a plain-HTTP Vault beyond loopback, and says how to allow it', () => {
    const issues = configIssues(vault('http://vault.internal:8200'))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(/^4:vault\.address is plain HTTP beyond loopback: the Vault token .* in clear/)
    expect(issues[0]).toContain('vault.plaintext_beyond_loopback: true')
    expect(configIssues(vault('http://vault.internal:8200', '  plaintext_beyond_loopback: true\n'))).toEqual([])
    expect(configIssues(vault('https://vault.internal:8200'))).toEqual([])
    expect(configIssues(vault('http://127.0.0.1:8200'))).toEqual([])
    expect(configIssues(vault('http://[::1]:8200'))).toEqual([])
  })

  it('refuses a plain-HTTP JWKS URL beyond loopback for each issuer, and a JWKS URL that is no URL', () => {
    const issuer = (name: string, url: string, extra = '') =>
      `identity:\n  ${name}: { issuer: https://idp, audience: corridor, algorithms: [ES256], jwks_url: "${url}"${extra} }\n`
    for (const name of ['agent_jwt', 'user_jwt', 'approver_jwt']) {
      const issues = configIssues(issuer(name, 'http://idp.internal/jwks'))
      expect(issues).toHaveLength(1)
      expect(issues[0]).toContain(`identity.${name}.jwks_url is plain HTTP beyond loopback`)
      expect(issues[0]).toContain('forge tokens')
      expect(configIssues(issuer(name, 'http://idp.internal/jwks', ', plaintext_beyond_loopback: true'))).toEqual([])
      expect(configIssues(issuer(name, 'https://idp.internal/jwks'))).toEqual([])
      expect(configIssues(issuer(name, 'http://localhost:9000/jwks'))).toEqual([])
      expect(configIssues(issuer(name, 'file:///etc/jwks.json'))[0]).toContain(
        `identity.${name}.jwks_url must be an http(s) URL`,
      )
    }
  })
})

/** The issues reading this connectors.yaml reports, one line each. */
const connectorIssues = (yaml: string): string[] => {
  const reader = new YamlReader('connectors.yaml', yaml)
  readConnectorCatalog(reader)
  return reader.issues.map((i) => `${i.line}:${i.message}`)
}

const connector = (upstream: string, credential: string, extra = '') => `connectors:
  - id: records
    owner: qa
    upstream: ${upstream}
    certified_until: 2099-01-01${extra}${credential === '' ? '' : `\n    credential: ${credential}`}
    actions:
      - { name: items.list, method: GET, path: /items, risk: read }
`
const ENV_CREDENTIAL =
  '{ source: env, env: RECORDS_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }'
const oauth2 = (tokenUrl: string) =>
  `{ source: oauth2, token_url: "${tokenUrl}", client_id: corridor, client_secret: { env: CLIENT_SECRET }, inject: { header: authorization, format: "Bearer {secret}" } }`

describe('connectors.yaml', () => {
  it('refuses an upstream beyond loopback over plain HTTP when it would receive a credential', () => {
    const issues = connectorIssues(connector('http://records.internal/api', ENV_CREDENTIAL))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(/^4:connectors\[0\]\.upstream is plain HTTP beyond loopback: the credential/)
    expect(issues[0]).toContain('connectors[0].plaintext_beyond_loopback: true')
  })

  it('lets it be when the connector sends no credential, goes over TLS, stays on loopback or says so', () => {
    expect(connectorIssues(connector('http://records.internal/api', ''))).toEqual([])
    expect(connectorIssues(connector('https://records.internal/api', ENV_CREDENTIAL))).toEqual([])
    expect(connectorIssues(connector('http://127.0.0.1:9090/api', ENV_CREDENTIAL))).toEqual([])
    expect(
      connectorIssues(
        connector('http://records.internal/api', ENV_CREDENTIAL, '\n    plaintext_beyond_loopback: true'),
      ),
    ).toEqual([])
  })

  it('refuses a plain-HTTP OAuth2 token endpoint beyond loopback, even in front of a TLS upstream', () => {
    const issues = connectorIssues(connector('https://records.internal/api', oauth2('http://idp.internal/token')))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(/connectors\[0\]\.credential\.token_url is plain HTTP beyond loopback: the client secret/)
    expect(connectorIssues(connector('https://records.internal/api', oauth2('https://idp.internal/token')))).toEqual([])
    expect(connectorIssues(connector('https://records.internal/api', oauth2('http://127.0.0.1:7000/token')))).toEqual(
      [],
    )
    // Both in clear: both named.
    expect(connectorIssues(connector('http://records.internal/api', oauth2('http://idp.internal/token')))).toHaveLength(
      2,
    )
  })

  it('passes the connectors this repository ships', () => {
    expect(connectorIssues(YamlReader.fromFile('policies/connectors.yaml').text)).toEqual([])
  })
})

describe('certificate checks', () => {
  it("refuses NODE_TLS_REJECT_UNAUTHORIZED=0 in either environment, and only '0' (what Node obeys)", () => {
    expect(whyCertificateChecksOff({ NODE_TLS_REJECT_UNAUTHORIZED: '0' })).toMatch(/NODE_EXTRA_CA_CERTS/)
    expect(whyCertificateChecksOff({}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' })).not.toBeNull()
    for (const value of ['1', '', 'false', 'no'])
      expect(whyCertificateChecksOff({ NODE_TLS_REJECT_UNAUTHORIZED: value })).toBeNull()
    expect(whyCertificateChecksOff({}, {})).toBeNull()
  })
})
