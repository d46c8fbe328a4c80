/**
 * Decision = execution, proven by generation: thousands of seeded hostile requests go through
 * Corridor to an Express upstream, and the bytes the upstream received are read by the real
 * parsers of Express (qs, body-parser), Rack, werkzeug, Go net/http and the JDK. For every request
 * Corridor forwarded, each parser must read the same method, path, query, form or JSON fields
 * and headers as the policy read (the canonical request Corridor built); every other request
 * must have been refused with problem+json and exactly one audit record.
 *
 * Reproduce a failure with DIFF_SEED=<seed printed below>; DIFF_CASES sets the count.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect } from 'node:net'
import { join } from 'node:path'
import { loadBundle, type PolicyBundle } from '../../src/policy/bundle.ts'
import { canonicalRequest, routeTarget, type CanonicalRequest } from '../../src/request/canonical-request.ts'
import { parseFormFields, Repeated, serializePairs, type FieldNode } from '../../src/request/fields.ts'
import { parseRequestTarget } from '../../src/request/target.ts'
import { eventually, startCorridorFixture, type CorridorFixture } from '../helpers/corridor-fixture.ts'
import { AGENT_KEY, hash } from '../helpers/standard-policy.ts'
import { generateRequests, type GeneratedRequest } from './generate.ts'
import {
  goReader,
  javaReader,
  rackReader,
  rawBytes,
  startExpressUpstream,
  werkzeugReader,
  type ExpressUpstream,
  type ReceivedRaw,
  type Reading,
} from './readers.ts'

const SEED = Number(process.env['DIFF_SEED'] ?? 20261130)
const CASES = Number(process.env['DIFF_CASES'] ?? 2500)
const UPSTREAM_TOKEN = 'diff-upstream-token-1234567890'

let upstream: ExpressUpstream
let fx: CorridorFixture
let bundle: PolicyBundle

beforeAll(async () => {
  upstream = await startExpressUpstream()
  fx = await startCorridorFixture(
    {
      agents: `agents:\n  - id: writer\n    owner: team-a\n    tier: transactional\n    connectors: [diff]\n    api_keys: [{ hash: "${hash(AGENT_KEY)}" }]\n`,
      connectors: `connectors:
  - id: diff
    owner: team-a
    upstream: ${upstream.url}/base
    certified_until: 2099-12-31
    credential: { source: env, env: DIFF_TOKEN, inject: { header: authorization, format: "Bearer {secret}" } }
    limits: { max_body: 64KiB, max_json_depth: 8 }
    actions:
      - { name: items.list, method: GET, path: /items, risk: read }
      - { name: items.get, method: GET, path: "/items/{id}", risk: read }
      - { name: items.create, method: POST, path: /items, risk: write }
      - { name: items.replace, method: PUT, path: "/items/{id}", risk: write }
      - { name: items.update, method: PATCH, path: "/items/{id}", risk: write }
      - { name: items.delete, method: DELETE, path: "/items/{id}", risk: write }
`,
      // Every action is allowed; the body rule makes Corridor read (and so parse) every body.
      policy: `version: 1\nrules:\n  - id: all\n    effect: allow\n    match: { connectors: [diff], body: { never_sent: { present: false } } }\n`,
    },
    { DIFF_TOKEN: UPSTREAM_TOKEN },
  )
  bundle = loadBundle({
    agents: join(fx.dir, 'agents.yaml'),
    connectors: join(fx.dir, 'connectors.yaml'),
    policy: join(fx.dir, 'policy.yaml'),
  })
}, 60_000)

afterAll(async () => {
  await fx?.close()
  await upstream?.close()
})

interface Exchange {
  status: number
  headers: Record<string, string>
  body: string
}

/** One request on its own connection, read until its Content-Length is complete. */
function exchange(url: string, bytes: Buffer): Promise<Exchange> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(bytes))
    let data = Buffer.alloc(0)
    const done = (): boolean => {
      const end = data.indexOf('\r\n\r\n')
      if (end === -1) return false
      const head = data.subarray(0, end).toString('latin1').split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of head.slice(1))
        headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim()
      const length = Number(headers['content-length'] ?? 0)
      if (data.length < end + 4 + length) return false
      resolve({
        status: Number(head[0]?.split(' ')[1]),
        headers,
        body: data.subarray(end + 4, end + 4 + length).toString('utf8'),
      })
      socket.destroy()
      return true
    }
    socket.on('data', (c: Buffer) => {
      data = Buffer.concat([data, c])
      done()
    })
    socket.on('error', reject)
    socket.on('close', () => {
      if (!done()) resolve({ status: 0, headers: {}, body: data.toString('latin1') })
    })
    socket.setTimeout(5_000, () => socket.destroy())
  })
}

function wire(r: GeneratedRequest): Buffer {
  let head = `${r.method} ${r.target} HTTP/1.1\r\nHost: corridor.test\r\nAuthorization: Bearer ${AGENT_KEY}\r\n`
  for (const [name, value] of r.headers) head += `${name}: ${value}\r\n`
  if (r.body.length > 0) head += `Content-Length: ${r.body.length}\r\n`
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), r.body])
}

/** What the policy read: the canonical request Corridor builds for these bytes. */
function policyReading(r: GeneratedRequest): CanonicalRequest {
  const rawHeaders = ['Host', 'corridor.test', 'Authorization', `Bearer ${AGENT_KEY}`]
  for (const [name, value] of r.headers) rawHeaders.push(name, value)
  const target = routeTarget(bundle.catalog, 'corridor.test', r.method, parseRequestTarget(r.target))
  return canonicalRequest({ target, rawHeaders, body: r.body, agentKey: AGENT_KEY, readsBody: true })
}

// ---- comparing readings ----------------------------------------------------------------------

type Style = 'qs' | 'rack'

/** A nesting parser's tree against ours: Repeated is an array to qs and the last value to Rack; Rack keeps indexed lists as hashes. */
function sameNested(ours: FieldNode | undefined, theirs: unknown, style: Style): boolean {
  if (ours === undefined) return theirs === undefined
  if (typeof ours === 'string') return theirs === ours
  if (ours instanceof Repeated)
    return style === 'qs'
      ? Array.isArray(theirs) && theirs.length === ours.values.length && ours.values.every((v, i) => theirs[i] === v)
      : theirs === ours.values.at(-1)
  if (Array.isArray(ours)) {
    let list: unknown[] | null = Array.isArray(theirs) ? theirs : null
    if (list === null && style === 'rack' && theirs !== null && typeof theirs === 'object') {
      const keys = Object.keys(theirs)
      if (keys.every((k, i) => k === String(i))) list = keys.map((k) => (theirs as Record<string, unknown>)[k])
    }
    return list !== null && list.length === ours.length && ours.every((v, i) => sameNested(v, list[i], style))
  }
  if (theirs === null || typeof theirs !== 'object' || Array.isArray(theirs)) return false
  const ourKeys = Object.keys(ours)
  const theirKeys = Object.keys(theirs)
  return (
    ourKeys.length === theirKeys.length &&
    ourKeys.every((k) => sameNested(ours[k], (theirs as Record<string, unknown>)[k], style))
  )
}

/** A flat parser's multimap against our pairs. */
function sameFlat(pairs: readonly (readonly [string, string])[], theirs: unknown): boolean {
  const ours = new Map<string, string[]>()
  for (const [name, value] of pairs) ours.set(name, [...(ours.get(name) ?? []), value])
  if (theirs === null || typeof theirs !== 'object') return ours.size === 0 && (theirs === null || theirs === undefined)
  const their = theirs as Record<string, string[]>
  return (
    Object.keys(their).length === ours.size &&
    [...ours].every(([name, values]) => JSON.stringify(their[name]) === JSON.stringify(values))
  )
}

/** JSON values equal as numbers (Go keeps number text, Python and Ruby may read 1.0 as a float). */
function sameJson(ours: unknown, theirs: unknown): boolean {
  if (typeof ours === 'number')
    return (typeof theirs === 'number' || typeof theirs === 'string') && Number(theirs) === ours
  if (ours === null || typeof ours !== 'object') return ours === theirs
  if (Array.isArray(ours))
    return Array.isArray(theirs) && theirs.length === ours.length && ours.every((v, i) => sameJson(v, theirs[i]))
  if (theirs === null || typeof theirs !== 'object' || Array.isArray(theirs)) return false
  const keys = Object.keys(ours)
  return (
    keys.length === Object.keys(theirs).length &&
    keys.every((k) => sameJson((ours as Record<string, unknown>)[k], (theirs as Record<string, unknown>)[k]))
  )
}

/** Headers Corridor itself adds; every other header a parser sees must be one the policy read. */
const CORRIDOR_ADDED = new Set([
  'host',
  'authorization',
  'content-length',
  'accept-encoding',
  'x-forwarded-for',
  'x-forwarded-proto',
  'connection',
])

interface ReaderSpec {
  nested: Style | null
  /** Whether its path is decoded. */
  decodedPath: boolean
  json: boolean
  headers: boolean
}

const SPECS: Record<string, ReaderSpec> = {
  Express: { nested: 'qs', decodedPath: false, json: true, headers: true },
  'Ruby Rack': { nested: 'rack', decodedPath: false, json: true, headers: false },
  'Python werkzeug': { nested: null, decodedPath: true, json: true, headers: false },
  'Go net/http': { nested: null, decodedPath: true, json: true, headers: true },
  'Java (JDK HttpServer, servlet-style parameters)': { nested: null, decodedPath: true, json: false, headers: true },
}

/** Every way `theirs` differs from the policy's reading; empty when they agree. */
function differences(reader: string, ours: CanonicalRequest, theirs: Reading): string[] {
  const spec = SPECS[reader] as ReaderSpec
  const out: string[] = []
  if (theirs.error !== undefined) return [`could not read it: ${theirs.error}`]
  if (theirs.method !== ours.method) out.push(`method ${theirs.method} ≠ ${ours.method}`)
  const path = spec.decodedPath ? decodeURIComponent(ours.upstreamPath) : ours.upstreamPath
  if (theirs.path !== path) out.push(`path ${JSON.stringify(theirs.path)} ≠ ${JSON.stringify(path)}`)
  // Parsers that take dots literally are compared with the same pairs read that way.
  const literal = (pairs: readonly (readonly [string, string])[]) =>
    parseFormFields(serializePairs(pairs), 'field', { dotsNest: false }).tree
  const fieldsAgree = (what: string, pairs: readonly (readonly [string, string])[], their: unknown): void => {
    const same =
      spec.nested === null ? sameFlat(pairs, their) : sameNested(literal(pairs) as FieldNode, their ?? {}, spec.nested)
    if (!same) out.push(`${what} ${JSON.stringify(their)} ≠ policy's ${JSON.stringify(pairs)}`)
  }
  fieldsAgree('query', ours.query.pairs, theirs.query)
  const contentType = ours.headerView.get('content-type')
  const kind = typeof contentType === 'string' ? contentType.toLowerCase() : ''
  if (ours.body.length > 0 && kind.startsWith('application/x-www-form-urlencoded')) {
    fieldsAgree('form', parseFormFields(ours.body.toString('utf8'), 'form').pairs, theirs.form)
  } else if (spec.json && ours.body.length > 0 && kind.includes('json') && !sameJson(ours.bodyFields, theirs.json)) {
    out.push(`json ${JSON.stringify(theirs.json)} ≠ policy's ${JSON.stringify(ours.bodyFields)}`)
  }
  if (spec.headers && theirs.headers !== undefined) {
    for (const [name, value] of ours.headerView) {
      const expected = value instanceof Repeated ? value.values : [value]
      const got = theirs.headers[name]
      const gotList = got === undefined ? [] : Array.isArray(got) ? got : [got]
      if (gotList.join(', ') !== expected.join(', '))
        out.push(`header ${name} ${JSON.stringify(got)} ≠ ${JSON.stringify(expected)}`)
    }
    for (const name of Object.keys(theirs.headers)) {
      if (!CORRIDOR_ADDED.has(name) && !ours.headerView.has(name))
        out.push(`header ${name} reached the upstream but the policy did not read it`)
    }
  }
  return out
}

// ---- the run --------------------------------------------------------------------------------

describe('decision = execution: generated requests read by real parsers', () => {
  it(`every forwarded request reads the same to every parser; every other one is refused and audited (seed ${SEED}, ${CASES} cases)`, async () => {
    const requests = generateRequests(SEED, CASES)
    const forwarded: { request: GeneratedRequest; received: ReceivedRaw; ours: CanonicalRequest }[] = []
    const refusedIds: string[] = []
    const failures: string[] = []
    const codes = new Map<string, number>()
    for (const request of requests) {
      const before = upstream.received.length
      const answer = await exchange(fx.corridor.agentUrl, wire(request))
      const sent = upstream.received.length - before
      const code = answer.headers['x-corridor-error']
      if (code !== undefined) {
        codes.set(code, (codes.get(code) ?? 0) + 1)
        if (sent !== 0)
          failures.push(`refused (${code}) yet forwarded: ${JSON.stringify(wire(request).toString('latin1'))}`)
        if (!/^application\/(problem\+)?json/.test(answer.headers['content-type'] ?? ''))
          failures.push(`refusal without a problem body: ${answer.status}`)
        const id = answer.headers['x-corridor-request-id']
        if (id === undefined)
          failures.push(`refusal without a request id: ${JSON.stringify(wire(request).toString('latin1'))}`)
        else refusedIds.push(id)
        continue
      }
      if (answer.status === 0 && sent === 0) {
        // Node's own parser closed the connection: covered by the client-error records below.
        codes.set(
          '(connection closed by the HTTP parser)',
          (codes.get('(connection closed by the HTTP parser)') ?? 0) + 1,
        )
        continue
      }
      if (sent !== 1) {
        failures.push(
          `answered ${answer.status} but the upstream received ${sent} requests: ${JSON.stringify(wire(request).toString('latin1'))}`,
        )
        continue
      }
      let ours: CanonicalRequest
      try {
        ours = policyReading(request)
      } catch (err) {
        failures.push(
          `forwarded, but the canonical request refuses it (${(err as Error).message}): ${JSON.stringify(wire(request).toString('latin1'))}`,
        )
        continue
      }
      forwarded.push({ request, received: upstream.received[before] as ReceivedRaw, ours })
    }

    const readers = [rackReader(), werkzeugReader(), goReader(), javaReader()]
    const ran = ['Express']
    const notRun: string[] = []
    for (const { received, ours, request } of forwarded) {
      for (const d of differences('Express', ours, received.express))
        failures.push(
          `Express: ${d}\n  sent: ${JSON.stringify(wire(request).toString('latin1'))}\n  forwarded: ${JSON.stringify(rawBytes(received).toString('latin1'))}`,
        )
    }
    for (const reader of readers) {
      if (reader.unavailable !== null) {
        notRun.push(`${reader.name}: ${reader.unavailable}`)
        continue
      }
      const readings = await reader.read(forwarded.map((f) => f.received))
      ran.push(reader.name)
      forwarded.forEach(({ ours, received, request }, i) => {
        for (const d of differences(reader.name, ours, readings[i] as Reading))
          failures.push(
            `${reader.name}: ${d}\n  sent: ${JSON.stringify(wire(request).toString('latin1'))}\n  forwarded: ${JSON.stringify(rawBytes(received).toString('latin1'))}`,
          )
      })
    }

    // Exactly one audit record for every refusal (records are written as each response closes).
    await eventually(() => {
      const ids = new Set(fx.auditRecords().map((r) => r.request_id))
      expect(refusedIds.filter((id) => !ids.has(id))).toEqual([])
    }, 5_000)
    const records = fx.auditRecords()
    const perId = new Map<string, number>()
    for (const r of records) perId.set(r.request_id, (perId.get(r.request_id) ?? 0) + 1)
    for (const id of refusedIds)
      if (perId.get(id) !== 1) failures.push(`refusal ${id} has ${perId.get(id) ?? 0} audit records`)

    console.log(
      `differential (seed ${SEED}): ${requests.length} requests, ${forwarded.length} forwarded and read by ${ran.join(', ')}; ${refusedIds.length} refused: ` +
        [...codes].map(([c, n]) => `${c} ${n}`).join(', ') +
        (notRun.length > 0 ? `\nparsers NOT run on this machine: ${notRun.join('; ')}` : ''),
    )
    expect(failures.slice(0, 20)).toEqual([])
    // The generator must exercise both sides, or the suite proves nothing.
    expect(forwarded.length).toBeGreaterThan(CASES / 10)
    expect(refusedIds.length).toBeGreaterThan(CASES / 10)
  }, 300_000)
})
