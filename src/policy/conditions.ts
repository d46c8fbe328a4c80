/**
 * Value conditions used in rule `match` blocks: a scalar means equality, a list means
 * membership, a mapping names operators (equals, not_equals, in, not_in, lt, lte, gt, gte,
 * present). A missing value satisfies only `present: false`.
 *
 * Numbers that JSON cannot carry faithfully (beyond ±2^53, or infinite) are refused rather
 * than compared: upstreams parse them differently, so any decision on them would be a guess.
 */
import { CorridorError } from '../shared/errors.ts'

export type ValueTest = (value: unknown) => boolean

export interface CompiledCondition {
  readonly describe: string
  readonly test: ValueTest
}

const OPERATORS = ['equals', 'not_equals', 'in', 'not_in', 'lt', 'lte', 'gt', 'gte', 'present'] as const
type Operator = (typeof OPERATORS)[number]

const NUMERIC_TEXT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?$/

function asNumber(value: unknown, field: string): number | undefined {
  let n: number
  if (typeof value === 'number') n = value
  else if (typeof value === 'string' && NUMERIC_TEXT.test(value)) n = Number(value)
  else return undefined
  if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n))) {
    throw new CorridorError('ambiguous_request', `${field} holds a number that cannot be compared exactly`)
  }
  return n
}

function sameScalar(value: unknown, expected: unknown): boolean {
  if (value === expected) return true
  // Path params, query values and headers are text; let `per_page: 50` match "50".
  if (typeof value === 'string' && (typeof expected === 'number' || typeof expected === 'boolean')) return value === String(expected)
  return false
}

function oneOperator(op: Operator, operand: unknown, field: string): ValueTest | string {
  switch (op) {
    case 'equals':
      if (operand !== null && typeof operand === 'object') return `'equals' takes a scalar`
      return (v) => v !== undefined && sameScalar(v, operand)
    case 'not_equals':
      if (operand !== null && typeof operand === 'object') return `'not_equals' takes a scalar`
      return (v) => v !== undefined && !sameScalar(v, operand)
    case 'in':
    case 'not_in': {
      if (!Array.isArray(operand) || operand.some((x) => x !== null && typeof x === 'object')) return `'${op}' takes a list of scalars`
      const list = operand as unknown[]
      const member = (v: unknown): boolean => list.some((x) => sameScalar(v, x))
      return op === 'in' ? (v) => v !== undefined && member(v) : (v) => v !== undefined && !member(v)
    }
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      if (typeof operand !== 'number' || !Number.isFinite(operand)) return `'${op}' takes a number`
      const bound = operand
      const cmp =
        op === 'lt' ? (n: number) => n < bound : op === 'lte' ? (n: number) => n <= bound : op === 'gt' ? (n: number) => n > bound : (n: number) => n >= bound
      return (v) => {
        const n = asNumber(v, field)
        return n !== undefined && cmp(n)
      }
    }
    case 'present':
      if (typeof operand !== 'boolean') return `'present' takes true or false`
      return operand ? (v) => v !== undefined : (v) => v === undefined
  }
}

/**
 * Compiles one condition. Returns an error message (for positioned reporting) when the
 * operand is malformed.
 */
export function compileCondition(field: string, spec: unknown): CompiledCondition | string {
  if (Array.isArray(spec)) return compileCondition(field, { in: spec })
  if (spec === null || typeof spec !== 'object') return compileCondition(field, { equals: spec })
  const entries = Object.entries(spec as Record<string, unknown>)
  if (entries.length === 0) return `condition on ${field} names no operator`
  const tests: ValueTest[] = []
  const parts: string[] = []
  for (const [op, operand] of entries) {
    if (!(OPERATORS as readonly string[]).includes(op)) return `unknown operator '${op}' on ${field} (expected one of: ${OPERATORS.join(', ')})`
    const t = oneOperator(op as Operator, operand, field)
    if (typeof t === 'string') return `${field}: ${t}`
    tests.push(t)
    parts.push(`${op} ${JSON.stringify(operand)}`)
  }
  const describe = `${field} ${parts.join(' and ')}`
  if (tests.length === 1) return { describe, test: tests[0] as ValueTest }
  return { describe, test: (v) => tests.every((t) => t(v)) }
}

/** Reads a dotted path (`customer.address.country`, `items.0.sku`) from a parsed JSON body. */
export function readBodyField(body: unknown, path: readonly string[]): unknown {
  let node: unknown = body
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined
    if (Array.isArray(node)) {
      if (!/^\d+$/.test(key)) return undefined
      node = node[Number(key)]
    } else {
      if (!Object.hasOwn(node, key)) return undefined
      node = (node as Record<string, unknown>)[key]
    }
  }
  return node
}
