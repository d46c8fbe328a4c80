/**
 * One field model for the query, form bodies and JSON bodies: a tree of objects, arrays and
 * strings that a dotted path (`metadata.role`, `items.0.sku`, `items.*.sku`) reads the same way
 * whichever of the three carried it.
 *
 * Query strings and form bodies are read the way the common nesting parsers read them (qs under
 * Express, Rack, PHP): `metadata[role]=admin` is the field `metadata.role`, `items[0][sku]=x` is
 * `items.0.sku`, `tags[]=a&tags[]=b` is the list `tags`. Wherever those parsers, or the flat ones
 * (werkzeug, Go, servlets), would read a name differently, the request is refused instead:
 * unbalanced or trailing brackets, `[]` followed by more brackets, indices that are not dense
 * and in order, nesting deeper than qs follows, a name that is both a value and a container.
 * A plain name repeated (`a=1&a=2`) is a `Repeated`: parsers keep the first, the last or all, so
 * the policy may read it only with a quantifier over all its values.
 *
 * What is forwarded is the canonical serialisation of the accepted pairs (strictly
 * percent-encoded, `&`-separated, in the agent's order), never the agent's bytes: `;` separators
 * (Rack), `+` and other spellings cannot be read twice.
 */
import { CorridorError } from '../shared/errors.ts'

/** A plain name given several values: every value is kept, and only quantifiers may read it. */
export class Repeated {
  readonly values: readonly string[]
  constructor(values: readonly string[]) {
    this.values = values
  }
}

export type FieldNode = string | Repeated | FieldNode[] | { [key: string]: FieldNode }
export type FieldTree = { readonly [key: string]: FieldNode }

/** A parsed query or form body: the tree the policy reads and the pairs that are forwarded. */
export interface FormFields {
  readonly tree: FieldTree
  /** Decoded name/value pairs in the agent's order; the forwarded form is their canonical encoding. */
  readonly pairs: readonly (readonly [string, string])[]
}

export const EMPTY_FIELDS: FormFields = { tree: Object.freeze(Object.create(null) as FieldTree), pairs: [] }

/** qs stops nesting after five brackets and keeps the rest as a literal key. */
const MAX_BRACKETS = 5
/** qs turns `[n]` into an array index only up to 20; beyond, it is an object key. */
const MAX_INDEX = 20

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48
  if (code >= 65 && code <= 70) return code - 55
  if (code >= 97 && code <= 102) return code - 87
  return -1
}

/** Form-urlencoded decoding, strictly: `+` is a space, escapes must be well formed, the result must be UTF-8. */
export function decodeFormComponent(raw: string, what: string): string {
  if (raw.indexOf('%') === -1 && raw.indexOf('+') === -1) return raw
  const source = Buffer.from(raw, 'utf8')
  const bytes = Buffer.allocUnsafe(source.length)
  let n = 0
  for (let i = 0; i < source.length; i++) {
    const c = source[i] as number
    if (c === 37 /* % */) {
      const hi = hexValue(source[i + 1] ?? 0)
      const lo = hexValue(source[i + 2] ?? 0)
      if (hi < 0 || lo < 0) throw new CorridorError('bad_request', `malformed percent-escape in ${what}`)
      bytes[n++] = hi * 16 + lo
      i += 2
    } else bytes[n++] = c === 43 /* + */ ? 32 : c
  }
  try {
    return utf8.decode(bytes.subarray(0, n))
  } catch {
    throw new CorridorError('bad_request', `${what} is not valid UTF-8 once decoded`)
  }
}

const UNRESERVED = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1
const HEX = '0123456789ABCDEF'

/** Percent-encodes everything but RFC 3986 unreserved characters: no reader can take these bytes two ways. */
export function encodeStrict(text: string): string {
  let plain = true
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 128 || UNRESERVED[c] !== 1) {
      plain = false
      break
    }
  }
  if (plain) return text
  let out = ''
  for (const b of Buffer.from(text, 'utf8'))
    out +=
      b < 128 && UNRESERVED[b] === 1 ? String.fromCharCode(b) : '%' + (HEX[b >> 4] as string) + (HEX[b & 15] as string)
  return out
}

export function serializePairs(pairs: readonly (readonly [string, string])[]): string {
  let out = ''
  for (const [name, value] of pairs) out += (out === '' ? '' : '&') + encodeStrict(name) + '=' + encodeStrict(value)
  return out
}

/** Splits a field name into its path: `a[b][0]` → ['a', 'b', '0'], `tags[]` → ['tags', ''], `a.b` → ['a', 'b']. */
export function fieldNamePath(name: string, what: string, dotsNest = true): string[] {
  const refuse = (why: string): never => {
    throw new CorridorError('ambiguous_request', `${what} name '${name.slice(0, 64)}' is refused: ${why}`)
  }
  if (name === '') refuse('empty name')
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) refuse('control character')
  }
  const open = name.indexOf('[')
  const base = open === -1 ? name : name.slice(0, open)
  if (base === '' || base.includes(']')) refuse('brackets must follow a name')
  // A dot nests for readers that allow dots (qs allowDots) and is literal for the others: the
  // policy reads it as nesting, and the literal readers see the same value under the same name.
  const path = dotsNest ? base.split('.') : [base]
  if (base.split('.').some((p) => p === '')) refuse('empty segment around a dot')
  if (open === -1) return checkNames(path, refuse)
  let i = open
  let brackets = 0
  while (i < name.length) {
    if (name[i] !== '[') refuse('text after a closing bracket')
    const close = name.indexOf(']', i)
    if (close === -1) refuse('unbalanced bracket')
    const segment = name.slice(i + 1, close)
    if (segment.includes('[')) refuse('nested bracket')
    if (segment.includes('.')) refuse('dot inside brackets')
    if (++brackets > MAX_BRACKETS) refuse(`more than ${MAX_BRACKETS} brackets`)
    if (segment === '' && close !== name.length - 1) refuse("'[]' may only end a name")
    path.push(segment)
    i = close + 1
  }
  return checkNames(path, refuse)
}

/** qs silently drops names that shadow Object.prototype (`toString`, `__proto__`); others keep them. */
function checkNames(path: string[], refuse: (why: string) => never): string[] {
  for (const segment of path) if (segment in Object.prototype) refuse(`'${segment}' is a name some parsers drop`)
  return path
}

const INDEX = /^(?:0|[1-9]\d*)$/

function isContainer(node: FieldNode | undefined): node is FieldNode[] | { [key: string]: FieldNode } {
  return node !== undefined && typeof node === 'object' && !(node instanceof Repeated)
}

/**
 * Parses a query string or form body (already split off, still encoded) into fields. `what`
 * names it in refusals ("query", "form field"). The policy reads dots as nesting; `dotsNest:
 * false` gives the reading of parsers that take them literally (for comparing the two).
 */
export function parseFormFields(
  encoded: string,
  what: string,
  options: { readonly dotsNest?: boolean } = {},
): FormFields {
  const dotsNest = options.dotsNest ?? true
  if (encoded === '') return EMPTY_FIELDS
  const tree = Object.create(null) as { [key: string]: FieldNode }
  const pairs: [string, string][] = []
  for (const part of encoded.split('&')) {
    if (part === '') continue // every parser skips empty pairs
    const eq = part.indexOf('=')
    const name = decodeFormComponent(eq === -1 ? part : part.slice(0, eq), `${what} name`)
    const value = eq === -1 ? '' : decodeFormComponent(part.slice(eq + 1), `${what} value`)
    if (value.includes('\0'))
      throw new CorridorError('ambiguous_request', `${what} '${name.slice(0, 64)}' holds a NUL byte`)
    insert(tree, fieldNamePath(name, what, dotsNest), value, name, what)
    pairs.push([name, value])
  }
  return { tree, pairs }
}

/** Lists built with `name[]` (as opposed to `name[0]`); a list keeps one style. */
const appended = new WeakSet<FieldNode[]>()

function insert(
  tree: { [key: string]: FieldNode },
  path: readonly string[],
  value: string,
  name: string,
  what: string,
): void {
  const refuse = (why: string): never => {
    throw new CorridorError('ambiguous_request', `${what} '${name.slice(0, 64)}' is refused: ${why}`)
  }
  let node: FieldNode[] | { [key: string]: FieldNode } = tree
  for (let i = 0; i < path.length; i++) {
    const key = path[i] as string
    const last = i === path.length - 1
    if (Array.isArray(node)) {
      if (key === '') {
        // `tags[]`: appends a value (only as the last bracket, checked by fieldNamePath).
        if (node.length > 0 && !appended.has(node)) refuse("'[]' added to a list given with indices")
        appended.add(node)
        node.push(value)
        return
      }
      if (!INDEX.test(key)) refuse('a list cannot also have named fields')
      // Rack refuses `tags[]` mixed with `tags[1]`, qs merges them: one style per list.
      if (appended.has(node)) refuse("an index added to a list given with '[]'")
      const index = Number(key)
      if (index > node.length) refuse('list indices must start at 0 and go up by one, in order')
      if (index === node.length) {
        if (last) node.push(value)
        else node.push(newContainer(path[i + 1] as string))
        if (last) return
      } else if (last) refuse('given more than once')
      const child: FieldNode = node[index] as FieldNode
      if (!isContainer(child)) refuse('a value cannot also have fields')
      node = child as FieldNode[] | { [key: string]: FieldNode }
      continue
    }
    // A container's first field decides whether it is a list; top-level names are always named fields.
    if (i > 0 && (key === '' || INDEX.test(key))) refuse('a set of named fields cannot also be a list')
    const existing: FieldNode | undefined = node[key]
    if (last) {
      if (existing === undefined) node[key] = value
      else if (typeof existing === 'string') node[key] = new Repeated([existing, value])
      else if (existing instanceof Repeated) node[key] = new Repeated([...existing.values, value])
      else refuse('a set of fields cannot also be a value')
      return
    }
    if (existing === undefined) {
      const created = newContainer(path[i + 1] as string)
      node[key] = created
      node = created
    } else if (isContainer(existing)) {
      const wantsList = path[i + 1] === '' || INDEX.test(path[i + 1] as string)
      if (wantsList !== Array.isArray(existing)) refuse('given both as a list and as named fields')
      node = existing
    } else refuse('a value cannot also have fields')
  }
}

function newContainer(nextKey: string): FieldNode[] | { [key: string]: FieldNode } {
  if (nextKey === '' || INDEX.test(nextKey)) {
    if (nextKey !== '' && Number(nextKey) > MAX_INDEX) {
      throw new CorridorError(
        'ambiguous_request',
        `list index ${nextKey} is above ${MAX_INDEX} (parsers disagree on whether it is a list)`,
      )
    }
    return []
  }
  return Object.create(null) as { [key: string]: FieldNode }
}

/** What a path reads: one value, or (through `*` segments) every value it reaches. */
export type FieldRead =
  { readonly many: false; readonly value: unknown } | { readonly many: true; readonly values: readonly unknown[] }

/**
 * Reads a path (already split at dots) from a parsed JSON body or a field tree. `*` stands for
 * every element of a list (or every value of a repeated name).
 */
export function readPath(root: unknown, path: readonly string[]): FieldRead {
  if (!path.includes('*')) return { many: false, value: step(root, path, 0) }
  const out: unknown[] = []
  collect(root, path, 0, out)
  return { many: true, values: out }
}

function step(root: unknown, path: readonly string[], from: number): unknown {
  let node = root
  for (let i = from; i < path.length; i++) {
    const key = path[i] as string
    if (node === null || typeof node !== 'object' || node instanceof Repeated) return undefined
    if (Array.isArray(node)) {
      if (!INDEX.test(key)) return undefined
      node = node[Number(key)]
    } else {
      if (!Object.hasOwn(node, key)) return undefined
      node = (node as Record<string, unknown>)[key]
    }
  }
  return node
}

function collect(node: unknown, path: readonly string[], from: number, out: unknown[]): void {
  const star = path.indexOf('*', from)
  if (star === -1) {
    const value = step(node, path, from)
    if (value !== undefined) out.push(value)
    return
  }
  const list = step(node, path.slice(from, star), 0)
  const elements = Array.isArray(list) ? list : list instanceof Repeated ? list.values : null
  if (elements === null) return
  for (const element of elements) collect(element, path, star + 1, out)
}
