/**
 * Value conditions used in rule `match` blocks: a scalar means equality, a list means
 * membership, a mapping names operators (equals, not_equals, in, not_in, lt, lte, gt, gte,
 * present), or one quantifier over a list (any, all, count). A missing value satisfies only
 * `present: false`.
 *
 * A condition never skips a value because it was written oddly:
 *  - numbers are compared as every common parser reads them (numbers.ts); where parsers
 *    disagree the request is refused (`ambiguous_request`), whatever the rule's effect;
 *  - a scalar condition that meets a list (a JSON array, `a[]=…`, a repeated name or header) or
 *    an object refuses the request: the upstream may act on an element the condition did not
 *    read. Lists are read with quantifiers, and paths with `*` (`items.*.sku`) need one;
 *  - `all` over a missing or empty list fails in allow and require_approval rules (nothing was
 *    checked, so nothing is allowed) and holds in deny rules.
 */
import { CorridorError } from '../shared/errors.ts'
import { Repeated, type FieldRead } from '../request/fields.ts'
import { testNumeric } from './numbers.ts'

export type ValueTest = (value: unknown) => boolean

export interface CompiledCondition {
  readonly describe: string
  /** Tests what a field path read; throws CorridorError('ambiguous_request') rather than guess. */
  readonly test: (read: FieldRead) => boolean
}

export interface ConditionContext {
  /** Dotted field name, for messages. */
  readonly field: string
  /** Whether the path contains `*` (it then reads many values and needs a quantifier). */
  readonly many: boolean
  /** The rule denies: an empty `all` holds instead of failing. */
  readonly denies: boolean
}

const OPERATORS = ['equals', 'not_equals', 'in', 'not_in', 'lt', 'lte', 'gt', 'gte', 'present'] as const
const QUANTIFIERS = ['any', 'all', 'count'] as const
type Operator = (typeof OPERATORS)[number]
type Quantifier = (typeof QUANTIFIERS)[number]

function isScalar(x: unknown): boolean {
  return x === null || typeof x !== 'object'
}

/** Equality as upstreams read it: numbers by their numeric readings, everything else exactly. */
function equalsScalar(value: unknown, expected: unknown, field: string): boolean {
  if (typeof expected === 'number') return testNumeric(value, field, (n) => n === expected)
  if (value === expected) return true
  // Path params, query values and headers are text; let `dry_run: true` match "true".
  return typeof value === 'string' && typeof expected === 'boolean' && value === String(expected)
}

function oneOperator(op: Operator, operand: unknown, field: string): ValueTest | string {
  switch (op) {
    case 'equals':
      if (!isScalar(operand)) return `'equals' takes a scalar`
      return (v) => v !== undefined && equalsScalar(v, operand, field)
    case 'not_equals':
      if (!isScalar(operand)) return `'not_equals' takes a scalar`
      return (v) => v !== undefined && !equalsScalar(v, operand, field)
    case 'in':
    case 'not_in': {
      if (!Array.isArray(operand) || !operand.every(isScalar)) return `'${op}' takes a list of scalars`
      const list = operand as unknown[]
      const member = (v: unknown): boolean => {
        let found = false
        // Every element is compared (not just until the first hit), so that an ambiguous number is always noticed.
        for (const x of list) if (equalsScalar(v, x, field)) found = true
        return found
      }
      return op === 'in' ? (v) => v !== undefined && member(v) : (v) => v !== undefined && !member(v)
    }
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      if (typeof operand !== 'number' || !Number.isFinite(operand)) return `'${op}' takes a number`
      const bound = operand
      const cmp =
        op === 'lt'
          ? (n: number) => n < bound
          : op === 'lte'
            ? (n: number) => n <= bound
            : op === 'gt'
              ? (n: number) => n > bound
              : (n: number) => n >= bound
      return (v) => v !== undefined && testNumeric(v, field, cmp)
    }
    case 'present':
      if (typeof operand !== 'boolean') return `'present' takes true or false`
      return operand ? (v) => v !== undefined : (v) => v === undefined
  }
}

/** A scalar condition: list or object values are refused, since the condition cannot say which element counts. */
function compileScalar(
  spec: unknown,
  field: string,
): { describe: string; test: ValueTest; presenceOnly: boolean } | string {
  if (Array.isArray(spec)) return compileScalar({ in: spec }, field)
  if (isScalar(spec)) return compileScalar({ equals: spec }, field)
  const entries = Object.entries(spec as Record<string, unknown>)
  if (entries.length === 0) return `condition on ${field} names no operator`
  const tests: ValueTest[] = []
  const parts: string[] = []
  for (const [op, operand] of entries) {
    if ((QUANTIFIERS as readonly string[]).includes(op))
      return `'${op}' must be the only key of the condition on ${field}`
    if (!(OPERATORS as readonly string[]).includes(op))
      return `unknown operator '${op}' on ${field} (expected one of: ${[...OPERATORS, ...QUANTIFIERS].join(', ')})`
    const t = oneOperator(op as Operator, operand, field)
    if (typeof t === 'string') return `${field}: ${t}`
    tests.push(t)
    parts.push(`${op} ${JSON.stringify(operand)}`)
  }
  const test: ValueTest = tests.length === 1 ? (tests[0] as ValueTest) : (v) => tests.every((t) => t(v))
  return { describe: parts.join(' and '), test, presenceOnly: entries.every(([op]) => op === 'present') }
}

function refuseComposite(value: unknown, field: string): never {
  throw new CorridorError(
    'ambiguous_request',
    `${field} holds ${Array.isArray(value) || value instanceof Repeated ? 'several values' : 'an object'}; a rule reads it as one value, so the request is refused`,
  )
}

function elementsOf(value: unknown, field: string): readonly unknown[] {
  if (value === undefined) return []
  if (Array.isArray(value)) return value
  if (value instanceof Repeated) return value.values
  if (value !== null && typeof value === 'object') refuseComposite(value, field)
  return [value]
}

/**
 * Compiles one condition. Returns an error message (for positioned reporting) when the
 * operand is malformed.
 */
export function compileCondition(spec: unknown, ctx: ConditionContext): CompiledCondition | string {
  const { field } = ctx
  const quantifier =
    spec !== null && typeof spec === 'object' && !Array.isArray(spec)
      ? Object.keys(spec).find((k) => (QUANTIFIERS as readonly string[]).includes(k))
      : undefined
  if (quantifier === undefined) {
    if (ctx.many) return `${field} reads every element of a list ('*'); say how with any, all or count`
    const scalar = compileScalar(spec, field)
    if (typeof scalar === 'string') return scalar
    const { test, presenceOnly } = scalar
    return {
      describe: `${field} ${scalar.describe}`,
      test: (read) => {
        const value = read.many ? undefined : read.value
        if (!presenceOnly && value !== undefined && !isScalar(value)) refuseComposite(value, field)
        return test(value)
      },
    }
  }
  if (Object.keys(spec as object).length !== 1)
    return `'${quantifier}' must be the only key of the condition on ${field}`
  const operand = (spec as Record<string, unknown>)[quantifier]
  const inner = compileScalar(operand, quantifier === 'count' ? `count of ${field}` : `element of ${field}`)
  if (typeof inner === 'string') return inner
  const q = quantifier as Quantifier
  const values = (read: FieldRead): readonly unknown[] => (read.many ? read.values : elementsOf(read.value, field))
  const each = (v: unknown): boolean => {
    if (!isScalar(v)) refuseComposite(v, `an element of ${field}`)
    return inner.test(v)
  }
  const describe = `${q} of ${field} ${inner.describe}`
  switch (q) {
    case 'count':
      return { describe: `count of ${field} ${inner.describe}`, test: (read) => inner.test(values(read).length) }
    case 'any':
      return {
        describe,
        test: (read) => {
          // Every element is read, so that an ambiguous one refuses the request whatever its position.
          let hit = false
          for (const v of values(read)) if (each(v)) hit = true
          return hit
        },
      }
    case 'all':
      return {
        describe,
        test: (read) => {
          const list = values(read)
          if (list.length === 0) return ctx.denies
          let ok = true
          for (const v of list) if (!each(v)) ok = false
          return ok
        },
      }
  }
}

/**
 * Splits a rule's field name into a path: dots and brackets both nest (`metadata.role` and
 * `metadata[role]` are one field), `*` stands for every element of a list.
 */
export function fieldPath(name: string): string[] | string {
  const dotted = name.replace(/\[([^\[\]]*)\]/g, '.$1')
  if (/[\[\]]/.test(dotted)) return `field '${name}' has unbalanced brackets`
  const path = dotted.split('.')
  if (path.some((p) => p === '')) return `field '${name}' has an empty segment`
  return path
}
