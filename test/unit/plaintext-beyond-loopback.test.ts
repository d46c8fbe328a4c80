/**
 * A credential, or what proves one, crosses the network only over TLS: Vault's address, a JWKS
 * URL, an upstream that receives a credential and an OAuth2 token endpoint are refused as plain
 * HTTP beyond loopback, each with its own line and position, unless the file says so in words; so
 * is an audit store whose PostgreSQL connection, as the driver reads it, has no TLS that checks a
 * certificate.
 * Every spelling of a host is read as the URL parser reads it, as the connection would.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { whyCertificateChecksOff } from '../../src/config/certificate-checks.ts'
import { loadServerConfig } from '../../src/config/server-config.ts'
import { ConfigError, YamlReader } from '../../src/config/yaml-reader.ts'
import { startCorridor } from '../../src/main.ts'
import { readConnectorCatalog } from '../../src/registry/connectors.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { isLoopbackHost, sentInClear } from '../../src/shared/in-clear.ts'
import { corridorCli } from '../helpers/cli.ts'

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

const configWith = (yaml: string, audit = ''): string => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-clear-'))
  writeFileSync(
    join(dir, 'corridor.yaml'),
    `files: { agents: a.yaml, connectors: c.yaml, policy: p.yaml }\naudit: { file: audit.log${audit} }\n${yaml}`,
  )
  return join(dir, 'corridor.yaml')
}

/** The issues loading this corridor.yaml reports, one line each; [] when it loads. */
const configIssues = (yaml: string, audit = ''): string[] => {
  try {
    loadServerConfig(configWith(yaml, audit))
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.issues.map((i) => `${i.line}:${i.message}`)
  }
}
/** The same, with more keys in the audit mapping. */
const auditIssues = (audit: string): string[] => configIssues('', `, ${audit}`)

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

describe('corridor.yaml: Redis, the approvals webhook and OTLP exports', () => {
  it.each(['approvals', 'state'])('refuses %s.redis as plain Redis beyond loopback, in the file', (section) => {
    const redis = (url: string, extra = '') => `${section}:\n  redis: { url: "${url}"${extra} }\n`
    const issues = configIssues(redis('redis://:pw@redis.internal:6379'))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toContain(`${section}.redis.url is plain Redis beyond loopback`)
    expect(issues[0]).toContain('anyone on the path could change them; use rediss://')
    expect(issues[0]).toContain(`${section}.redis.plaintext_beyond_loopback: true`)
    // The password in the URL is not repeated in the message.
    expect(issues[0]).not.toContain(':pw@')
    expect(configIssues(redis('rediss://:pw@redis.internal:6379'))).toEqual([])
    expect(configIssues(redis('redis://127.0.0.1:6379'))).toEqual([])
    expect(configIssues(redis('redis://redis.internal:6379', ', plaintext_beyond_loopback: true'))).toEqual([])
    // ioredis reads a URL without a scheme as plain Redis: it must name its scheme, or it is not checked as used.
    for (const url of ['redis.internal:6379', '//redis.internal:6379', 'http://redis.internal:6379'])
      expect(configIssues(redis(url))).toEqual([`4:${section}.redis.url must be a redis:// or rediss:// URL`])
  })

  it('refuses a plain-HTTP approvals webhook beyond loopback', () => {
    const webhook = (url: string, extra = '') => `approvals:\n  webhook: { url: "${url}"${extra} }\n`
    expect(configIssues(webhook('http://hooks.internal/T000/B000/secret'))[0]).toMatch(
      /approvals\.webhook\.url is plain HTTP beyond loopback: the webhook URL \(often a token\)/,
    )
    expect(configIssues(webhook('https://hooks.slack.com/services/T000/B000/secret'))).toEqual([])
    expect(configIssues(webhook('http://hooks.internal/x', ', plaintext_beyond_loopback: true'))).toEqual([])
    expect(configIssues(webhook('hooks.internal/x'))).toEqual(['4:approvals.webhook.url must be an http(s) URL'])
  })

  it.each([
    ['audit', 'otlp'],
    ['telemetry', 'traces'],
  ])('refuses %s.%s over plain HTTP beyond loopback only when it carries headers (an API key)', (section, key) => {
    // audit: is already in the file, so its otlp key joins that mapping.
    const issuesOf = (endpoint: string, extra = '') => {
      const value = `{ endpoint: "${endpoint}"${extra} }`
      return section === 'audit' ? auditIssues(`otlp: ${value}`) : configIssues(`telemetry:\n  ${key}: ${value}\n`)
    }
    const issues = issuesOf('http://collector.internal:4318', ', headers_env: OTLP_HEADERS')
    expect(issues).toHaveLength(1)
    expect(issues[0]).toContain(
      `${section}.${key}.endpoint is plain HTTP beyond loopback: the headers of headers_env (an API key) would cross the network in clear; use https, or set ${section}.${key}.plaintext_beyond_loopback: true`,
    )
    expect(issuesOf('http://collector.internal:4318')).toEqual([])
    expect(issuesOf('https://collector.internal:4318', ', headers_env: OTLP_HEADERS')).toEqual([])
    expect(issuesOf('http://127.0.0.1:4318', ', headers_env: OTLP_HEADERS')).toEqual([])
    expect(
      issuesOf('http://collector.internal:4318', ', headers_env: OTLP_HEADERS, plaintext_beyond_loopback: true'),
    ).toEqual([])
    expect(issuesOf('collector.internal:4318')[0]).toContain(`${section}.${key}.endpoint must be an http(s) URL`)
  })

  it('refuses a URL from the environment when Corridor starts, before it opens anything', async () => {
    const file = configWith('approvals:\n  redis: { url_env: APPROVALS_REDIS }\n')
    const config = loadServerConfig(file)
    const log = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }))
    await expect(
      startCorridor(config, { env: { APPROVALS_REDIS: 'redis://:hunter2@redis.internal:6379' }, log }),
    ).rejects.toThrow(/^approvals\.redis\.url_env \(APPROVALS_REDIS\) is plain Redis beyond loopback/)
    expect(existsSync(join(dirname(file), 'audit.log'))).toBe(false)
    await expect(startCorridor(config, { env: { APPROVALS_REDIS: 'redis.internal:6379' }, log })).rejects.toThrow(
      /^approvals\.redis\.url_env \(APPROVALS_REDIS\) must be a redis:\/\/ or rediss:\/\/ URL$/,
    )
    await expect(startCorridor(config, { env: {}, log })).rejects.toThrow(
      'approvals.redis.url_env names APPROVALS_REDIS, which is not set',
    )
  })
})

describe('corridor.yaml: hosts written as addresses Corridor never connects to', () => {
  it('refuses them for Vault, key sets, token endpoints, the webhook and both collectors, whatever the scheme', () => {
    const vault = (address: string) =>
      `vault:\n  address: "${address}"\n  auth: { method: token, token_env: VAULT_TOKEN }\n`
    const issuer = (url: string) =>
      `identity:\n  agent_jwt: { issuer: https://idp, audience: corridor, algorithms: [ES256], jwks_url: "${url}" }\n`
    expect(configIssues(vault('https://169.254.169.254:8200'))).toEqual([
      '4:vault.address is an address Corridor never connects to (169.254.169.254: cloud_metadata)',
    ])
    expect(configIssues(issuer('https://[fd00:ec2::254]/jwks'))).toEqual([
      '4:identity.agent_jwt.jwks_url is an address Corridor never connects to (fd00:ec2::254: cloud_metadata)',
    ])
    // In any spelling the URL parser reads as one.
    expect(configIssues('approvals:\n  webhook: { url: "https://2852039166/hook" }\n')).toEqual([
      '4:approvals.webhook.url is an address Corridor never connects to (169.254.169.254: cloud_metadata)',
    ])
    expect(configIssues('telemetry:\n  traces: { endpoint: "http://0.0.0.0:4318" }\n')).toEqual([
      '4:telemetry.traces.endpoint is an address Corridor never connects to (0.0.0.0: unspecified)',
    ])
    expect(auditIssues('otlp: { endpoint: "http://[::ffff:169.254.0.1]:4318" }')).toEqual([
      '2:audit.otlp.endpoint is an address Corridor never connects to (::ffff:a9fe:1: link_local)',
    ])
    expect(
      connectorIssues(connector('https://records.internal/api', oauth2('https://[64:ff9b::a9fe:a9fe]/token'))),
    ).toEqual([
      expect.stringContaining(
        'connectors[0].credential.token_url is an address Corridor never connects to (64:ff9b::a9fe:a9fe: cloud_metadata)',
      ),
    ])
    // Names are judged when they are resolved, not here; private and loopback addresses are allowed.
    expect(configIssues(vault('https://vault.internal:8200'))).toEqual([])
    expect(configIssues(vault('https://10.0.0.5:8200'))).toEqual([])
  })
})

describe('corridor.yaml: the audit store, PostgreSQL', () => {
  const store = (url: string, extra = '') => auditIssues(`postgres: { url: "${url}"${extra} }`)
  const refused = (issues: string[]) => {
    expect(issues).toHaveLength(1)
    expect(issues[0]).toContain(
      'audit.postgres.url reaches PostgreSQL beyond loopback without TLS that checks its certificate',
    )
    expect(issues[0]).toContain('anyone on the path could change what a query shows; add sslmode=verify-full')
    expect(issues[0]).toContain('audit.postgres.plaintext_beyond_loopback: true')
    expect(issues[0]).not.toContain(':pw@')
  }

  it('refuses a connection beyond loopback without TLS, or with TLS that checks no certificate, as node-postgres reads the URL', () => {
    const db = 'postgres://corridor:pw@db.internal:5432/audit'
    refused(store(db))
    refused(store(`${db}?sslmode=disable`))
    refused(store(`${db}?sslmode=no-verify`))
    // libpq's own meaning of require: encrypted, no certificate checked.
    refused(store(`${db}?uselibpqcompat=true&sslmode=require`))
    // verify-ca without a CA of its own (any certificate a public CA signed, for any name, would pass): the driver refuses it itself.
    expect(store(`${db}?uselibpqcompat=true&sslmode=verify-ca`)).toEqual([
      expect.stringMatching(/^2:audit\.postgres\.url: node-postgres refuses it: .*verify-ca requires specifying a CA/),
    ])
    // The driver connects to the host parameter, not to the URL's host.
    refused(store(`postgres://corridor:pw@127.0.0.1:5432/audit?host=db.internal`))
    expect(store(`${db}?sslmode=verify-full`)).toEqual([])
    expect(store(`${db}?ssl=true`)).toEqual([])
    expect(store(db, ', plaintext_beyond_loopback: true')).toEqual([])
  })

  it('lets loopback and Unix sockets be, and reads a CA file the driver would read', () => {
    expect(store('postgres://corridor:pw@127.0.0.1:5432/audit')).toEqual([])
    expect(store('postgresql://corridor:pw@[::1]:5432/audit')).toEqual([])
    expect(store('postgres://corridor:pw@db.internal/audit?host=127.0.0.1')).toEqual([])
    expect(store('postgres:///audit?host=/var/run/postgresql')).toEqual([])
    expect(store('socket:/var/run/postgresql?db=audit')).toEqual([])
    const ca = join(mkdtempSync(join(tmpdir(), 'corridor-pg-ca-')), 'ca.pem')
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n')
    // A password no temporary directory's random name can hold: a message that repeats it is withheld.
    const db = 'postgres://corridor:s3cret-pw@db.internal:5432/audit?uselibpqcompat=true&sslmode=verify-ca'
    expect(store(`${db}&sslrootcert=${ca}`)).toEqual([])
    expect(store(`${db}&sslrootcert=${ca}.missing`)).toEqual([
      expect.stringMatching(/^2:audit\.postgres\.url: node-postgres refuses it: ENOENT.*ca\.pem\.missing/),
    ])
    expect(store('mysql://corridor:pw@db.internal/audit')).toEqual([
      '2:audit.postgres.url must be a postgres:// or postgresql:// URL (or socket: for a Unix socket)',
    ])
  })

  it("follows the driver's PGSSLMODE for a URL that names no sslmode", () => {
    const before = process.env.PGSSLMODE
    try {
      process.env.PGSSLMODE = 'verify-full'
      expect(store('postgres://corridor:pw@db.internal/audit')).toEqual([])
      process.env.PGSSLMODE = 'disable'
      refused(store('postgres://corridor:pw@db.internal/audit'))
    } finally {
      if (before === undefined) delete process.env.PGSSLMODE
      else process.env.PGSSLMODE = before
    }
  })

  it('refuses one from the environment when Corridor starts, before it opens anything', async () => {
    const file = configWith('', ', postgres: { url_env: AUDIT_DATABASE_URL }')
    const log = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }))
    await expect(
      startCorridor(loadServerConfig(file), {
        env: { AUDIT_DATABASE_URL: 'postgres://corridor:hunter2@db.internal/audit' },
        log,
      }),
    ).rejects.toThrow(/^audit\.postgres\.url_env \(AUDIT_DATABASE_URL\) reaches PostgreSQL beyond loopback/)
    expect(existsSync(join(dirname(file), 'audit.log'))).toBe(false)
    // An auditor's query from the command line is judged the same, before it connects.
    const query = await corridorCli(['audit', 'query', '--config', file], {
      AUDIT_DATABASE_URL: 'postgres://corridor:hunter2@db.internal/audit',
    })
    expect(query.code).toBe(1)
    expect(query.stderr).toMatch(
      /^error: audit\.postgres\.url_env \(AUDIT_DATABASE_URL\) reaches PostgreSQL beyond loopback/,
    )
    expect(query.stderr).not.toContain('hunter2')
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
    // The way out is the connector's, as for its upstream.
    expect(issues[0]).toMatch(/or set connectors\[0\]\.plaintext_beyond_loopback: true$/)
    const allowed = '\n    plaintext_beyond_loopback: true'
    expect(
      connectorIssues(connector('https://records.internal/api', oauth2('http://idp.internal/token'), allowed)),
    ).toEqual([])
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
