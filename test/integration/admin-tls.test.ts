/**
 * The admin listener carries approver keys and decisions: beyond loopback it is served over TLS
 * (or refused at start), optionally with client certificates, and what it shows without
 * authentication is liveness and readiness only.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadServerConfig } from '../../src/config/server-config.ts'
import { ConfigError } from '../../src/config/yaml-reader.ts'
import { APPROVER_KEYS, approvalFiles } from '../helpers/approvals-fixture.ts'
import { makeCertificates, renewServerCertificate } from '../helpers/certificates.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts'

const minimalConfig = (admin: string) =>
  `${admin}\nfiles: { agents: a.yaml, connectors: c.yaml, policy: p.yaml }\naudit: { file: audit.log }\n`

describe('an admin listener beyond loopback', () => {
  it('is refused at start without TLS, unless plaintext is explicitly accepted', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-admin-'))
    const file = join(dir, 'corridor.yaml')
    writeFileSync(file, minimalConfig('admin: { host: 0.0.0.0, port: 8081 }'))
    expect(() => loadServerConfig(file)).toThrow(ConfigError)
    expect(() => loadServerConfig(file)).toThrow(
      /corridor\.yaml:1:16: admin\.host 0\.0\.0\.0 is reachable beyond this machine/,
    )
    writeFileSync(file, minimalConfig('admin: { host: 0.0.0.0, port: 8081, plaintext_beyond_loopback: true }'))
    expect(loadServerConfig(file).admin).toMatchObject({ host: '0.0.0.0', tls: null })
    writeFileSync(
      file,
      minimalConfig('admin: { host: 0.0.0.0, port: 8081, tls: { cert_file: a.pem, key_file: a.key } }'),
    )
    expect(loadServerConfig(file).admin.tls).toEqual({
      certFile: join(dir, 'a.pem'),
      keyFile: join(dir, 'a.key'),
      clientCaFile: null,
    })
  })
})

describe('the admin listener over mutual TLS', () => {
  let upstream: RecordingUpstream
  let fx: CorridorFixture
  let certs: ReturnType<typeof makeCertificates>
  let certDir: string
  let trusted: Agent
  let withClientCert: Agent

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'corridor-certs-'))
    certs = makeCertificates(certDir)
    upstream = await startRecordingUpstream()
    fx = await startCorridorFixture({
      ...approvalFiles(upstream.url),
      adminConfig: `admin: { host: 127.0.0.1, port: 0, tls: { cert_file: ${JSON.stringify(certs.cert)}, key_file: ${JSON.stringify(certs.key)}, client_ca_file: ${JSON.stringify(certs.ca)} } }`,
    })
    trusted = new Agent({ connect: { ca: readFileSync(certs.ca) } })
    withClientCert = new Agent({
      connect: { ca: readFileSync(certs.ca), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) },
    })
  })
  afterAll(async () => {
    await fx.close()
    await upstream.close()
    await trusted.close()
    await withClientCert.close()
  })

  it('answers HTTPS only, and only to clients with a certificate from the configured CA', async () => {
    expect(fx.corridor.adminUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const ready = await request(fx.corridor.adminUrl + '/readyz', { dispatcher: withClientCert })
    expect(ready.statusCode).toBe(200)
    await ready.body.dump()
    await expect(
      request(fx.corridor.adminUrl + '/readyz', { dispatcher: trusted }).then((r) => r.body.dump()),
    ).rejects.toThrow()
    await expect(
      request(fx.corridor.adminUrl.replace('https:', 'http:') + '/readyz').then((r) => r.body.text()),
    ).rejects.toThrow()
  })

  it('shows the policy status (file paths in load errors) to authenticated approvers only', async () => {
    const anonymous = await request(fx.corridor.adminUrl + '/policy', { dispatcher: withClientCert })
    expect(anonymous.statusCode).toBe(401)
    expect(await anonymous.body.text()).not.toContain(fx.dir)
    const approver = await request(fx.corridor.adminUrl + '/policy', {
      dispatcher: withClientCert,
      headers: { authorization: `Bearer ${APPROVER_KEYS.alice}` },
    })
    expect(approver.statusCode).toBe(200)
    expect(await approver.body.json()).toMatchObject({ version: expect.stringMatching(/^sha256:/) as string })
  })

  it('the approvals CLI reaches it with the configured trust and the client certificate', async () => {
    // Spawned without blocking: this process serves the admin listener the CLI talks to.
    const cli = (env: Record<string, string>) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ['bin/corridor.js', 'approvals', 'list', '--admin', fx.corridor.adminUrl, '--json'],
          { env: { ...process.env, CORRIDOR_APPROVER_TOKEN: APPROVER_KEYS.alice, ...env } },
        )
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
        child.once('exit', (status) => resolve({ status, stdout, stderr }))
      })
    const ok = await cli({
      CORRIDOR_ADMIN_CA: certs.ca,
      CORRIDOR_ADMIN_CLIENT_CERT: certs.clientCert,
      CORRIDOR_ADMIN_CLIENT_KEY: certs.clientKey,
    })
    expect(ok.stderr).toBe('')
    expect(ok.status).toBe(0)
    expect(JSON.parse(ok.stdout)).toEqual([])
    expect((await cli({ CORRIDOR_ADMIN_CA: certs.ca })).status).not.toBe(0)
  })

  it('serves a renewed certificate without a restart, still asking for client certificates from the CA', async () => {
    const { port } = new URL(fx.corridor.adminUrl)
    const serial = () =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(
          {
            host: '127.0.0.1',
            port: Number(port),
            ca: readFileSync(certs.ca),
            cert: readFileSync(certs.clientCert),
            key: readFileSync(certs.clientKey),
          },
          () => {
            resolve(socket.getPeerCertificate().serialNumber)
            socket.end()
          },
        )
        socket.once('error', reject)
      })
    const before = await serial()
    renewServerCertificate(certDir, certs)
    await eventually(async () => expect(await serial()).not.toBe(before), 5_000)
    const renewedAgent = new Agent({ connect: { ca: readFileSync(certs.ca) } })
    try {
      const ready = await request(fx.corridor.adminUrl + '/readyz', { dispatcher: withClientCert })
      expect(ready.statusCode).toBe(200)
      await ready.body.dump()
      // Without a client certificate the handshake is still refused: the client CA survived the reload.
      await expect(
        request(fx.corridor.adminUrl + '/readyz', { dispatcher: renewedAgent }).then((r) => r.body.dump()),
      ).rejects.toThrow()
    } finally {
      await renewedAgent.close()
    }
  })
})
