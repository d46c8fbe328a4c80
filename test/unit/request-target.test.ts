import { request } from 'undici'
import { describe, expect, it } from 'vitest'
import { parseRequestTarget } from '../../src/request/target.ts'
import { startRecordingUpstream } from '../helpers/recording-upstream.ts'

describe('canonical request target', () => {
  // Envoy's path_normalizer_test golden table plus path-normalisation bypasses of auth proxies (Envoy, Istio, oauth2-proxy CVEs).
  it.each([
    ['/dir1/../dir2', '/dir2'],
    ['/dir1/%2e./dir2', '/dir2'],
    ['/dir1/%2E%2E/dir2', '/dir2'],
    ['/a/.%2e/b', '/b'],
    ['/root///child//', '/root/child/'],
    ['/%7e/', '/~/'],
    ['/a/%c3%a9', '/a/%C3%A9'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/', '/'],
    ['/a;x=1', '/a;x=1'],
    ['/%61%62c', '/abc'],
    ['/a/%252e%252e/b', '/a/%252e%252e/b'],
  ])('%s → %s', (raw, expected) => {
    expect(parseRequestTarget(raw).path).toBe(expected)
  })

  it.each([
    ['/..', 'above the root'],
    ['/a/../../b', 'above the root'],
    ['//evil.example/x', 'protocol-relative'],
    ['http://evil.example/x', 'origin-form'],
    ['*', 'origin-form'],
    ['/a#b', 'fragment'],
    ['/a\\..\\admin', 'backslash'],
    ['/x%2F..%2Fadmin', 'encoded slash'],
    ['/x%5cadmin', 'encoded slash'],
    ['/a/%00', 'control'],
    ['/a/%0a', 'control'],
    ['/a/%zz', 'malformed'],
    ['/a/%2', 'malformed'],
    ['/a/..;/admin', 'dot-segment with parameters'],
    ['/a/.;x/b', 'dot-segment with parameters'],
    ['/a b', 'not allowed'],
    ['/a\tb', 'not allowed'],
    ['/é', 'not allowed'],
    ['/a?x=%zz', 'malformed'],
    ['/a/%ff', 'not UTF-8'],
    ['/a/%c3', 'not UTF-8'],
    ['/a/%ed%a0%80', 'not UTF-8'],
    ['/a?x=\x7f', 'not allowed'],
  ])('refuses %s', (raw, why) => {
    expect(() => parseRequestTarget(raw)).toThrow(why)
  })

  it('keeps the query byte for byte', () => {
    expect(parseRequestTarget('/a?b=1&b=2&c=%2F').query).toBe('b=1&b=2&c=%2F')
  })

  it('is idempotent and is exactly what undici puts on the wire (decision = wire)', async () => {
    const upstream = await startRecordingUpstream()
    const alphabet = ['/', '.', '..', '%2e', '%2E', '%7e', 'a', 'A', '~', ';', '%25', '%41', 'b', '-', '//']
    let seed = 42
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31)
    let compared = 0
    try {
      for (let i = 0; i < 400; i++) {
        let raw = '/'
        const len = 1 + (next() % 8)
        for (let k = 0; k < len; k++) raw += alphabet[next() % alphabet.length]
        let canonical: string
        try {
          canonical = parseRequestTarget(raw).path
        } catch {
          continue // refused: nothing is forwarded, nothing to compare
        }
        expect(parseRequestTarget(canonical).path).toBe(canonical)
        const res = await request(upstream.url + canonical)
        await res.body.dump()
        expect(upstream.received.at(-1)!.url).toBe(canonical)
        compared++
      }
    } finally {
      await upstream.close()
    }
    expect(compared).toBeGreaterThan(100)
  })
})
