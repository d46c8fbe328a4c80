/**
 * The building blocks every Corridor file format is declared with (zod). One declaration per
 * format serves three readers: the loader (which turns a YAML document into typed, checked
 * values), the JSON Schemas editors use for completion (`npm run docs:schemas`), and the
 * documentation. Messages are written for the person editing the YAML file, and start with
 * "must" so that the position formatter can put the field name in front of them.
 */
import * as z from 'zod'

/** A mapping that refuses keys it does not declare: a typo must never be silently ignored in a security policy. */
export function strict<Shape extends z.ZodRawShape>(shape: Shape, description?: string) {
  const schema = z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `expected one of: ${Object.keys(shape).join(', ')}` : undefined,
  })
  return description === undefined ? schema : schema.describe(description)
}

/** Non-empty text. `owner: 42` is a number to YAML and is refused with a hint to quote it, never turned into text. */
export const text = () => z.string().min(1, { error: 'must be a non-empty string' })

/** A string or a list of strings, always read as a list. */
export const textList = () =>
  z
    .union([text(), z.array(text())], { error: 'must be a string or a list of strings' })
    .transform((v): string[] => (typeof v === 'string' ? [v] : v))

/** A value from a fixed set. */
export const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: (issue) => `must be one of: ${values.join(', ')} (got ${describeInput(issue.input)})` })

/** One value or a list of values from a fixed set, always read as a list. */
export const oneOrMoreOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z
    .union([z.enum(values), z.array(z.enum(values))], {
      error: `must be one or a list of: ${values.join(', ')}`,
    })
    .transform((v): T[number][] => (Array.isArray(v) ? v : [v]))

/**
 * The words a file says to use plain HTTP, Redis or PostgreSQL beyond loopback, which is otherwise refused;
 * the description states what that gives away (`IN_CLEAR`'s sentences).
 */
export const plaintextBeyondLoopback = (...consequences: readonly string[]) =>
  z
    .boolean()
    .optional()
    .describe(`Allow plain HTTP, Redis or PostgreSQL beyond loopback here, although ${consequences.join(', and ')}`)

/** A whole number within [min, max] (ports, counts, depths). */
export const wholeNumber = (min: number, max: number) => {
  const message = `must be a whole number from ${min} to ${max}`
  return z.int({ error: message }).min(min, { error: message }).max(max, { error: message })
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/

/** `500ms`, `30s`, `5m`, `2h`, `1d` as milliseconds; undefined when the text is not a duration. */
export function parseDuration(value: string): number | undefined {
  const m = DURATION.exec(value.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] as number))
}

/** 500ms, 30s, 5m, 2h, 1d, or a bare number of milliseconds; read as milliseconds. */
export const duration = () =>
  z
    .union([z.number().nonnegative(), z.string().regex(DURATION)], {
      error: 'must be a duration such as 500ms, 30s, 5m or 2h',
    })
    .transform((v) => (typeof v === 'number' ? v : (parseDuration(v) as number)))
    .describe('A duration: 500ms, 30s, 5m, 2h, 1d, or a number of milliseconds')

const BYTE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1000, MB: 1000 ** 2 }
const BYTES = /^(\d+)\s*(B|KiB|MiB|GiB|KB|MB)?$/

function parseBytes(value: string): number | undefined {
  const m = BYTES.exec(value.trim())
  if (!m) return undefined
  return Number(m[1]) * (BYTE_UNITS[m[2] ?? 'B'] as number)
}

/** 4096, 64KiB, 1MiB; read as bytes. */
export const bytes = () =>
  z
    .union([z.int().nonnegative(), z.string().regex(BYTES)], { error: 'must be a size such as 4096, 64KiB or 1MiB' })
    .transform((v) => (typeof v === 'number' ? v : (parseBytes(v) as number)))
    .describe('A size: 4096, 64KiB, 1MiB, or a number of bytes')

export function describeInput(input: unknown): string {
  if (typeof input === 'string') return `'${input}'`
  if (input === undefined) return 'nothing'
  return typeof input === 'function' || typeof input === 'symbol' ? String(input) : JSON.stringify(input)
}
