/**
 * How common server stacks read a value as a number, so that a rule compares what the upstream
 * will compute. Text such as "05000", "+5000" or " 5000" is 5000 to every parser that accepts
 * it, and is compared as 5000. Where parsers disagree ("5e3": 5000 to JavaScript and Java's
 * parseDouble, 5 to Ruby's to_i; "5000.5": 5000 to to_i and Jackson's integer coercion), the
 * caller compares every reading and refuses the request when the answers differ.
 *
 * The readings modelled (a parser that rejects the text contributes none: it cannot execute
 * a different amount):
 *  - ECMAScript Number() (whitespace trimmed, hex/octal/binary prefixes, exponents, "" is 0);
 *  - whole-number parsers: Java Long.parseLong, Go strconv.Atoi, Python int() (which also trims
 *    and takes '_' between digits);
 *  - prefix integer parsers: Ruby to_i, PHP intval, C atoi (leading digits, else 0);
 *  - float parsers: Go ParseFloat, Java parseDouble, Python float(), Ruby to_f, parseFloat;
 *  - for numbers already numeric (JSON), the value and its truncation (integer fields in Jackson,
 *    Rails and PHP take 5000.7 as 5000).
 */
import { CorridorError } from '../shared/errors.ts'

const WHOLE = /^[+-]?\d+$/
const PY_INT = /^[+-]?\d+(?:_\d+)*$/
const PREFIX_INT = /^\s*([+-]?\d+(?:_\d+)*)/
const FLOAT = /^[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/
const PREFIX_FLOAT = /^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)/

/** Every number a common parser reads from the value; empty when none reads one. */
export function numericReadings(value: unknown, field: string): number[] {
  const out: number[] = []
  const add = (n: number): void => {
    if (Number.isNaN(n)) return
    if (!Number.isFinite(n) || (Number.isInteger(n) && !Number.isSafeInteger(n))) {
      throw new CorridorError('ambiguous_request', `${field} holds a number that cannot be compared exactly`)
    }
    if (!out.includes(n)) out.push(n)
  }
  if (typeof value === 'number') {
    add(value)
    add(Math.trunc(value))
    return out
  }
  if (typeof value !== 'string') return out
  add(Number(value))
  const trimmed = value.trim()
  if (WHOLE.test(value)) add(Number(value))
  if (PY_INT.test(trimmed)) add(Number(trimmed.replace(/_/g, '')))
  const prefix = PREFIX_INT.exec(value)
  add(prefix === null ? 0 : Number((prefix[1] as string).replace(/_/g, '')))
  if (FLOAT.test(trimmed)) add(Number(trimmed.replace(/_/g, '')))
  const prefixFloat = PREFIX_FLOAT.exec(value)
  if (prefixFloat !== null) add(Number(prefixFloat[1]))
  return out
}

/**
 * Applies a numeric test to every reading of the value. All readings must agree; a value no
 * parser reads as a number fails the test.
 */
export function testNumeric(value: unknown, field: string, test: (n: number) => boolean): boolean {
  const readings = numericReadings(value, field)
  if (readings.length === 0) return false
  const first = test(readings[0] as number)
  for (let i = 1; i < readings.length; i++) {
    if (test(readings[i] as number) !== first) {
      throw new CorridorError(
        'ambiguous_request',
        `${field} is written so that server stacks read different numbers from it (${readings.join(', ')}); send it in plain decimal`,
      )
    }
  }
  return first
}
