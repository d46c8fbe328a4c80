/**
 * The connector's credential never comes back to the agent: upstreams that echo the request,
 * quote the token in a 401 challenge, redirect with the query kept, or split the secret across
 * chunk boundaries (raw, URL-encoded, base64 at every alignment, JSON-escaped) are relayed with
 * every occurrence masked, for every placement: Bearer, a custom header, the query, Basic (from
 * a file and from a Vault database lease). Responses keep their length and streams their pace.
 */
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { startRecordingUpstream, type ReceivedRequest, type RecordingUpstream } from '../helpers/recording-upstream.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'
import { startVaultForCorridor, vaultConfigYaml, type VaultSetup } from '../helpers/vault-fixture.ts'
import { secretNeedles } from '../../src/request/secret-needles.ts'

// Characters that change under URL and JSON encoding, so every encoding is really exercised.
const BEARER = 'canary/bearer+tok=en_9f8e7d6c5b4a'
const CUSTOM = 'canary/custom+key=7a6b5c4d3e2f1a0b'
const QUERY = 'canary/query+key=0a1b2c3d4e5f6a7b'
const FILE_PASSWORD = 'canary/basic+pw=1234567890abcdef'

let upstream: RecordingUpstream
let fx: CorridorFixture
let vault: VaultSetup
let secretsSeen: string[] = []

/** Everything the upstream was given as a credential (the Vault password is only known once issued). */
function credentialOf(req: ReceivedRequest): string[] {
  const out: string[] = []
  const auth = req.headers.authorization
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) out.push(auth.slice(7))
  if (typeof auth === 'string' && auth.startsWith('Basic ')) {
    const pair = Buffer.from(auth.slice(6), 'base64').toString()
    out.push(pair, pair.slice(pair.indexOf(':') + 1), auth.slice(6))
  }
  if (typeof req.headers['x-api-key'] === 'string') out.push(req.headers['x-api-key'])
  const key = new URL(req.url, 'http://x').searchParams.get('api_key')
  if (key !== null) out.push(key)
  return out
}

function echo(req: ReceivedRequest, res: ServerResponse): void {
  const secrets = credentialOf(req)
  secretsSeen.push(...secrets)
  const secret = secrets[secrets.length - 1] ?? ''
  const path = new URL(req.url, 'http://x').pathname.split('/').pop() ?? ''
  switch (path) {
    case 'echo': {
      const body = JSON.stringify({ url: req.url, headers: req.headers })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
      return
    }
    case 'encoded': {
      const b64 = (s: string): string => Buffer.from(s).toString('base64')
      const body = [
        encodeURIComponent(secret),
        b64(secret),
        b64('x' + secret),
        b64('xy' + secret),
        Buffer.from(secret).toString('base64url'),
        JSON.stringify(secret),
        secret.replace(/\//g, '\\/'),
      ].join('\n')
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(body)
      return
    }
    case 'split': {
      // The secret arrives one byte per chunk, with pauses, inside a longer stream.
      res.writeHead(200, { 'content-type': 'text/plain' })
      const text = `token: ${secret} and again ${secret}.`
      let i = 0
      const tick = setInterval(() => {
        if (i >= text.length) {
          clearInterval(tick)
          res.end()
          return
        }
        res.write(text.slice(i, i + 1 + (i % 3)))
        i += 1 + (i % 3)
      }, 1)
      return
    }
    case 'challenge':
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="api", error="invalid_token", token="${secret}"`,
        'x-echo': secret,
        'content-type': 'application/json',
      })
      res.end(JSON.stringify({ error: `token ${secret} is not valid` }))
      return
    case 'redirect':
      res.writeHead(302, { location: `https://upstream.example${req.url}`, 'content-length': '0' })
      res.end()
      return
    case 'trailer':
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-secret' })
      res.write('body')
      res.addTrailers({ 'x-secret': secret })
      res.end()
      return
  }
  res.writeHead(404)
  res.end()
}

const ENDPOINTS = ['echo', 'encoded', 'split', 'challenge', 'redirect', 'trailer']

beforeAll(async () => {
  upstream = await startRecordingUpstream(echo)
  vault = await startVaultForCorridor()
  const dir = mkdtempSync(join(tmpdir(), 'corridor-mask-'))
  writeFileSync(join(dir, 'basic.secret'), FILE_PASSWORD)
  const actions = ENDPOINTS.map((e) => `      - { name: ${e}, method: GET, path: /${e}, risk: read }`).join('\n')
  const connector = (id: string, credential: string): string =>
    `  - id: ${id}\n    owner: team-a\n    upstream: ${upstream.url}/${id}\n    certified_until: 2099-12-31\n    credential:\n${credential}\n    actions:\n${actions}\n`
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - id: reader\n    owner: team-a\n    tier: read-only\n    connectors: [bearer, custom, query, basic, vaultdb]\n    api_keys: [{ hash: "${hash(AGENT_KEY)}" }]\n`,
      connectors:
        'connectors:\n' +
        connector(
          'bearer',
          '      source: env\n      env: BEARER\n      inject: { header: authorization, format: "Bearer {secret}" }',
        ) +
        connector('custom', '      source: env\n      env: CUSTOM\n      inject: { header: x-api-key }') +
        connector('query', '      source: env\n      env: QUERY\n      inject: { query: api_key }') +
        connector(
          'basic',
          `      source: file\n      file: ${join(dir, 'basic.secret')}\n      inject: { basic: { username: corridor-bot, password: "{secret}" } }`,
        ) +
        connector(
          'vaultdb',
          '      source: vault_dynamic\n      path: database/creds/app\n      inject: { basic: { username: "{username}", password: "{password}" } }',
        ),
      policy: 'version: 1\nrules:\n  - { id: all, effect: allow, match: { agents: [reader] } }\n',
      extraConfig: vaultConfigYaml(vault),
    },
    { BEARER, CUSTOM, QUERY, CORRIDOR_SECRET_ID: vault.secretId },
  )
}, 30_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
  await vault?.vault.stop()
})

describe('the injected credential is masked in everything the agent gets back', () => {
  for (const placement of ['bearer', 'custom', 'query', 'basic', 'vaultdb']) {
    it.each(ENDPOINTS)(`${placement}: %s`, async (endpoint) => {
      secretsSeen = []
      const res = await request(`${fx.corridor.agentUrl}/${placement}/${endpoint}?page=1`, {
        headers: { authorization: `Bearer ${AGENT_KEY}` },
      })
      const body = Buffer.from(await res.body.arrayBuffer())
      expect(secretsSeen.length).toBeGreaterThan(0) // the upstream really was given a credential to leak
      const relayed = Buffer.concat([Buffer.from(JSON.stringify(res.headers)), body])
      for (const secret of secretsSeen)
        for (const needle of secretNeedles(secret))
          expect(relayed.includes(needle), `${needle.toString()} came back`).toBe(false)
      // Masked, not removed: the body keeps its length where the upstream declared one.
      if (res.headers['content-length'] !== undefined) expect(body.length).toBe(Number(res.headers['content-length']))
      if (endpoint === 'split') expect(body.toString()).toMatch(/^token: \*+ and again \*+\.$/)
      if (endpoint === 'redirect') expect(String(res.headers.location)).toContain('page=1')
    })
  }
})
