/**
 * Seeded generator of hostile request variants: field names and values in every spelling the
 * common parsers read differently (brackets, dots, indices, repeats, `_method`, prototype
 * names, `+`, `;`, escapes, invalid UTF-8), JSON bodies with duplicates, odd numbers and
 * surrogates, Content-Types with tricky parameters, bodies on GET, matrix parameters, repeated
 * and Connection-named headers. The same seed always produces the same requests.
 */

export interface GeneratedRequest {
  readonly method: string
  /** Request target as sent, including the connector prefix. */
  readonly target: string
  readonly headers: readonly (readonly [string, string])[]
  readonly body: Buffer
}

/** mulberry32: small, fast, reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Names every parser agrees on once Corridor re-encodes them. */
const NAMES = [
  'a',
  'b',
  'amount',
  'role',
  'state',
  'metadata[role]',
  'metadata.role',
  'metadata[tier]',
  'metadata[a][b]',
  'items[0][sku]',
  'items[0][qty]',
  'tags[]',
  'e%5Bx%5D',
  '%61',
  'a+b',
  'a%20b',
  '%E2%82%AC',
  'created[gte]',
  'expand[]',
  'cf[10010]',
  'sysparm_query',
  'a%5B0%5D',
  'q%2Eb',
  'A',
  'list[0]',
]
/** Names parsers read differently: Corridor must refuse them (or they must still agree). */
const HOSTILE_NAMES = [
  'items[1][sku]',
  'items[2][sku]',
  'items[][sku]',
  'tags[0]',
  'tags[1]',
  'a[b]c',
  'a[b',
  'a]',
  '[a]',
  '_method',
  'toString',
  '__proto__',
  'constructor',
  'a.b',
  'a..b',
  '.a',
  'x[y][z][w][v][u][t]',
  'items[21]',
  'list[20]',
  'a%00',
  'a;b',
  '%FF',
  'metadata[2020]',
  '%5Bx%5D',
  'a[%5D',
]

const VALUES = [
  '5000',
  '05000',
  '+5000',
  '%205000',
  '5000%0A',
  '5e3',
  '0x1388',
  '5_000',
  '5000.5',
  '-1',
  'x',
  '',
  'a+b',
  'a%20b',
  '%2B',
  '%26x%3D1',
  '%3B',
  'a;b=c',
  '%C3%A9',
  '%E2%80%AE',
  '[5000]',
  'DELETE',
  'true',
  'admin',
  'priority=1^state!=7',
  'a|b',
  '%5B1%5D',
  '%25',
  'caf%C3%A9',
  '%F0%9F%98%80',
  'Infinity',
  '9007199254740993',
  '%0D%0AX-Injected:%201',
  '%22%7D',
]
const HOSTILE_VALUES = ['%FF', '%00', '%', '%zz', '%ED%A0%80', '%C3', '%E2%82']

/** Characters some clients send raw in a query. */
const RAW_QUERY = ['[', ']', '^', '|', '{', '}', '`', '"', "'", '!', '*', '(', ')', ',', ':', '@', '$', '/', '?']

const JSON_CONTENT_TYPES = [
  'application/json',
  'application/json',
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=UTF-8',
  'application/json;charset="utf-8"',
  'APPLICATION/JSON',
  'application/vnd.api+json',
  'application/json; charset=utf-7',
  'application/json; xcharset=utf-8; charset=utf-7',
  'application/json; charset=utf-8; charset=latin1',
  'application/json;',
  'application/json; charset=utf-16le',
  'text/json',
  'application/json; version=2',
]
const FORM_CONTENT_TYPES = [
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; charset="UTF-8"',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'application/x-www-form-urlencoded; charset=utf-8; charset=utf-7',
  'Application/X-WWW-Form-Urlencoded',
  'text/plain',
  'multipart/form-data; boundary=x',
]

const PATHS = [
  '/diff/items',
  '/diff/items',
  '/diff/items/x1',
  '/diff/items/x1',
  '/diff/items/x1',
  '/diff/items/a;b',
  '/diff/items/a%3Bb',
  '/diff/items/./x2',
  '/diff/items/%7Ex',
  '/diff/items/caf%C3%A9',
  '/diff/x/../items',
]

const JSON_SNIPPETS = [
  '{"amount":5000}',
  '{"amount":"05000"}',
  '{"amount":5e3}',
  '{"amount":5000.5}',
  '{"amount":[5000]}',
  '{"amount":9007199254740993}',
  '{"amount":1e400}',
  '{"a":1,"a":2}',
  '{"a":{"b":1},"a.b":2}',
  '{"__proto__":{"x":1}}',
  '{"s":"\\ud800"}',
  '{"s":"\\ud83d\\ude00"}',
  '\ufeff{"a":1}',
  '{"a":1} ',
  '{"a":1}x',
  '{"items":[{"sku":"a"},{"sku":"b","qty":2}]}',
  '{"metadata":{"role":"admin"}}',
  '{"_method":"DELETE"}',
  '[1,2,3]',
  '"text"',
  '{"a":-0,"b":1.0,"c":1E2}',
  '{"deep":[[[[[[[[[[1]]]]]]]]]]}',
  '{"k\\u0000":1}',
  '{"emoji":"\\u00e9\\u20ac"}',
  '{"n":null,"t":true}',
]

export function generateRequests(seed: number, count: number): GeneratedRequest[] {
  const random = prng(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T
  const chance = (p: number): boolean => random() < p

  const pair = (): string => {
    let name = chance(0.12) ? pick(HOSTILE_NAMES) : pick(NAMES)
    if (chance(0.1)) name = name.replace('[', '%5B').replace(']', '%5D')
    if (chance(0.05)) return name // no '='
    let value = chance(0.05) ? pick(HOSTILE_VALUES) : pick(VALUES)
    if (chance(0.15)) value += pick(RAW_QUERY)
    return `${name}=${value}`
  }
  const pairs = (): string => {
    const n = Math.floor(random() * 5)
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(pair())
    let joined = out.join(chance(0.1) ? ';' : '&')
    if (chance(0.05)) joined += '&&'
    return joined
  }

  const requests: GeneratedRequest[] = []
  for (let i = 0; i < count; i++) {
    const method = pick(['GET', 'GET', 'POST', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE'])
    const base =
      method === 'GET'
        ? chance(0.5)
          ? '/diff/items'
          : pick(PATHS)
        : method === 'POST'
          ? chance(0.8)
            ? '/diff/items'
            : pick(PATHS)
          : pick(PATHS.filter((p) => p !== '/diff/items'))
    const query = chance(0.7) ? pairs() : ''
    const target = query === '' ? base : `${base}?${query}`
    const headers: [string, string][] = []
    let body = Buffer.alloc(0)
    const withBody = method === 'GET' || method === 'DELETE' ? chance(0.15) : chance(0.9)
    if (withBody) {
      if (chance(0.5)) {
        headers.push(['content-type', pick(JSON_CONTENT_TYPES)])
        body = Buffer.from(chance(0.6) ? pick(JSON_SNIPPETS) : JSON.stringify(randomJson(random, 3)))
      } else {
        headers.push(['content-type', pick(FORM_CONTENT_TYPES)])
        let form = pairs() || 'a=1'
        if (chance(0.05)) form = form.replace(/%[0-9A-F]{2}/, '\xe9') // raw non-ASCII
        body = Buffer.from(form, 'latin1')
      }
    }
    if (chance(0.2)) headers.push(['x-dry-run', pick(['true', 'false', '1'])])
    if (chance(0.05)) headers.push(['x-dry-run', 'false'])
    if (chance(0.1)) headers.push(['accept', 'application/json'], ['accept', 'text/plain'])
    if (chance(0.05))
      headers.push(['connection', pick(['close, x-dry-run', 'keep-alive', 'close, te', 'close, content-type'])])
    if (chance(0.05)) headers.push(['x-http-method-override', 'DELETE'])
    if (chance(0.05)) headers.push(['x-forwarded-host', 'evil.example'])
    requests.push({ method, target, headers, body })
  }
  return requests
}

function randomJson(random: () => number, depth: number): unknown {
  const r = random()
  if (depth === 0 || r < 0.4) {
    const scalars: unknown[] = [5000, -1, 0.5, 'x', 'admin', '', true, null, '05000', 'caf\u00e9', 1e21]
    return scalars[Math.floor(random() * scalars.length)]
  }
  if (r < 0.6) return Array.from({ length: Math.floor(random() * 3) }, () => randomJson(random, depth - 1))
  const out: Record<string, unknown> = {}
  const keys = ['a', 'b', 'amount', 'metadata', 'items', 'role', 'a.b', 'x y', '0']
  for (let i = Math.floor(random() * 4); i > 0; i--)
    out[keys[Math.floor(random() * keys.length)] as string] = randomJson(random, depth - 1)
  return out
}
