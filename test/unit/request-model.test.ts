/**
 * The pure pieces of the canonical request and of value conditions, with generated inputs:
 * the field model and its canonical serialisation, numeric readings, the streaming mask.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SecretMask } from '../../src/request/secret-mask.ts'
import { numericReadings, testNumeric } from '../../src/policy/numbers.ts'
import { compileCondition } from '../../src/policy/conditions.ts'
import { parseFormFields, readPath, Repeated, serializePairs } from '../../src/request/fields.ts'
import { secretNeedles } from '../../src/request/secret-needles.ts'
import { parseJsonStrict } from '../../src/request/body.ts'

describe('field model', () => {
  it('nests bracket and dot names the way qs and Rack do', () => {
    const { tree } = parseFormFields(
      'metadata%5Brole%5D=admin&items[0][sku]=a&items[0][qty]=2&items[1][sku]=b&tags[]=x&tags[]=y&a.b=1&s=1&s=2',
      'form',
    )
    expect(readPath(tree, ['metadata', 'role'])).toEqual({ many: false, value: 'admin' })
    expect(readPath(tree, ['items', '*', 'sku'])).toEqual({ many: true, values: ['a', 'b'] })
    expect(readPath(tree, ['tags'])).toEqual({ many: false, value: ['x', 'y'] })
    expect(readPath(tree, ['a', 'b'])).toEqual({ many: false, value: '1' })
    expect(
      readPath(tree, ['s']).many === false && (readPath(tree, ['s']) as { value: unknown }).value instanceof Repeated,
    ).toBe(true)
  })

  it.each([
    'a[b]c=1',
    'a[b=1',
    'a]=1',
    '[a]=1',
    'items[1][x]=1',
    'x[][y]=1',
    'a=1&a[b]=2',
    'a[b]=1&a=2',
    'a[0]=1&a[x]=2',
    'toString=1',
    'a[__proto__]=1',
    'l[21]=1',
    'a..b=1',
    'x[a][b][c][d][e][f]=1',
    't[]=1&t[1]=2',
    'a=%00',
  ])('refuses %s', (form) => {
    expect(() => parseFormFields(form, 'form')).toThrow()
  })

  it('property: the canonical serialisation reads back as the same fields, and is a fixed point', () => {
    const name = fc.constantFrom(
      'a',
      'b',
      'amount',
      'metadata[role]',
      'items[0][sku]',
      'tags[]',
      'x.y',
      'é',
      'a b',
      'k&=;',
    )
    const value = fc.string({ maxLength: 12 }).filter((v) => !v.includes('\0') && Buffer.from(v).toString() === v)
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { maxLength: 6 }), (pairs) => {
        let fields
        try {
          fields = parseFormFields(serializePairs(pairs), 'form')
        } catch {
          return true // refused shapes are fine; accepted ones must round-trip
        }
        const again = parseFormFields(serializePairs(fields.pairs), 'form')
        expect(again.pairs).toEqual(fields.pairs)
        expect(serializePairs(again.pairs)).toBe(serializePairs(fields.pairs))
        expect(serializePairs(fields.pairs)).toMatch(/^[A-Za-z0-9\-._~%=&]*$/)
        return true
      }),
      { seed: 7, numRuns: 500 },
    )
  })
})

describe('numeric readings', () => {
  it.each([
    ['5000', [5000]],
    ['05000', [5000]],
    ['+5000', [5000]],
    [' 5000', [5000]],
    ['5000\n', [5000]],
    ['5e3', [5000, 5]],
    ['0x1388', [5000, 0]],
    ['5_000', [5000, 5]],
    ['5000.5', [5000.5, 5000]],
    ['abc', [0]],
  ] as const)('%j reads as %j', (text, expected) => {
    expect(new Set(numericReadings(text, 'f'))).toEqual(new Set(expected))
  })

  it('refuses when parsers disagree about the comparison, compares when they agree', () => {
    expect(testNumeric('5e3', 'f', (n) => n > 1)).toBe(true) // 5000 and 5 are both over 1
    expect(() => testNumeric('5e3', 'f', (n) => n > 4000)).toThrow('different numbers')
    expect(testNumeric('05000', 'f', (n) => n > 4000)).toBe(true)
    expect(() => testNumeric(5000.5, 'f', (n) => n > 5000)).toThrow('different numbers')
    expect(() => testNumeric('9007199254740993', 'f', () => true)).toThrow('exactly')
  })

  it('a scalar condition refuses a list; quantifiers read every element', () => {
    const gt = compileCondition({ gt: 10 }, { field: 'body.x', many: false, denies: true })
    if (typeof gt === 'string') throw new Error(gt)
    expect(() => gt.test({ many: false, value: [1, 20] })).toThrow('several values')
    const any = compileCondition({ any: { gt: 10 } }, { field: 'body.x', many: false, denies: true })
    if (typeof any === 'string') throw new Error(any)
    expect(any.test({ many: false, value: [1, 20] })).toBe(true)
    const allAllow = compileCondition({ all: { lt: 10 } }, { field: 'body.x', many: false, denies: false })
    const allDeny = compileCondition({ all: { lt: 10 } }, { field: 'body.x', many: false, denies: true })
    if (typeof allAllow === 'string' || typeof allDeny === 'string') throw new Error('compile')
    expect(allAllow.test({ many: false, value: [] })).toBe(false)
    expect(allDeny.test({ many: false, value: [] })).toBe(true)
    expect(compileCondition('x', { field: 'body.items.*.sku', many: true, denies: false })).toMatch(/any, all or count/)
  })
})

describe('streaming mask', () => {
  const secret = 'sk_live/Abc+def=0123456789'
  const encodings = [
    secret,
    encodeURIComponent(secret),
    Buffer.from(secret).toString('base64'),
    Buffer.from('u:' + secret).toString('base64'),
    JSON.stringify(secret),
    Buffer.from(secret).toString('base64url'),
  ]

  it('property: however the body is cut into chunks, no encoding of the secret survives and the length is kept', () => {
    const mask = new SecretMask([secret])
    const text = fc
      .array(fc.oneof(fc.constantFrom(...encodings), fc.string({ maxLength: 20 })), { maxLength: 8 })
      .map((parts) => Buffer.from(parts.join(' ')))
    fc.assert(
      fc.property(text, fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 40 }), (body, cuts) => {
        const stream = mask.stream()
        const out: Buffer[] = []
        let at = 0
        for (let i = 0; at < body.length; i++) {
          const size = cuts[i % cuts.length] as number
          out.push(stream.push(body.subarray(at, at + size)))
          at += size
        }
        out.push(stream.end())
        const result = Buffer.concat(out)
        expect(result.length).toBe(body.length)
        for (const needle of secretNeedles(secret)) expect(result.includes(needle)).toBe(false)
        expect(result.equals(mask.buffer(body))).toBe(true)
      }),
      { seed: 11, numRuns: 400 },
    )
  })

  it('holds back nothing that cannot start a secret (streams keep their pace)', () => {
    const stream = new SecretMask([secret]).stream()
    expect(stream.push(Buffer.from('data: hello\n\n')).toString()).toBe('data: hello\n\n')
    expect(stream.push(Buffer.from('data: sk_li')).toString()).toBe('data: ')
    expect(stream.end().toString()).toBe('sk_li')
  })
})

describe('strict JSON', () => {
  it.each([
    ['{"a":1,"a":2}', 'duplicate'],
    ['{"a\\"b":1,"a\\"b":2}', 'duplicate'],
    ['{"x":"a\\\\","a":1,"a":2}', 'duplicate'],
    ['{"\\u0061":1,"a":2}', 'duplicate'],
    ['{"__proto__":{}}', '__proto__'],
    ['{"s":"\\ud800"}', 'surrogate'],
    ['{"n":9007199254740993}', 'parsers'],
    ['{"n":1e400}', 'parsers'],
    ['[[[[[[[[[1]]]]]]]]]', 'deeper'],
  ])('refuses %s', (text, why) => {
    expect(() => parseJsonStrict(Buffer.from(text), 8)).toThrow(why)
  })

  it('property: any JSON without duplicate keys reads as JSON.parse reads it', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value)
        let strict: unknown
        try {
          strict = parseJsonStrict(Buffer.from(text), 64)
        } catch (err) {
          // Only numbers parsers read differently, lone surrogates or __proto__ may be refused.
          expect(String((err as Error).message)).toMatch(/parsers|surrogate|__proto__/)
          return true
        }
        expect(strict).toEqual(JSON.parse(text))
        return true
      }),
      { seed: 3, numRuns: 500 },
    )
  })
})
