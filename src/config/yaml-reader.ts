/**
 * Reads YAML documents with positions, so that every problem in a file a security team edits
 * is reported as `file:line:column: message`, all at once, instead of the first one only.
 * The typed accessors below are the schema: unknown keys are errors (a typo must never be
 * silently ignored in a security policy).
 */
import { readFileSync } from 'node:fs'
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml'

export interface ConfigIssue {
  file: string
  line: number
  col: number
  message: string
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly issues: readonly ConfigIssue[]
  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'))
    this.issues = issues
  }
}

export function formatIssue(issue: ConfigIssue): string {
  return `${issue.file}:${issue.line}:${issue.col}: ${issue.message}`
}

/** One YAML file being read: collects positioned issues instead of throwing at the first. */
export class YamlReader {
  readonly file: string
  readonly text: string
  readonly doc: Document
  readonly issues: ConfigIssue[] = []
  readonly #lines: LineCounter

  constructor(file: string, text: string) {
    this.file = file
    this.text = text
    this.#lines = new LineCounter()
    this.doc = parseDocument(text, { lineCounter: this.#lines, uniqueKeys: true, prettyErrors: false })
    for (const e of [...this.doc.errors, ...this.doc.warnings]) {
      const pos = this.#lines.linePos(e.pos[0])
      this.issues.push({ file, line: pos.line, col: pos.col, message: e.message.split('\n')[0] ?? e.message })
    }
  }

  static fromFile(file: string): YamlReader {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      const reader = new YamlReader(file, '')
      reader.issues.push({
        file,
        line: 1,
        col: 1,
        message: `cannot read file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      })
      return reader
    }
    return new YamlReader(file, text)
  }

  get root(): Node | null {
    return (this.doc.contents as Node | null) ?? null
  }

  position(node: Node | null | undefined): { line: number; col: number } {
    return this.#lines.linePos(node?.range?.[0] ?? 0)
  }

  issue(node: Node | null | undefined, message: string): void {
    const pos = this.position(node)
    this.issues.push({ file: this.file, line: pos.line, col: pos.col, message })
  }

  /** Throws a ConfigError if anything was reported. */
  assertValid(): void {
    if (this.issues.length > 0) throw new ConfigError(this.issues)
  }

  /** A mapping's entries; reports keys outside `allowed` and missing `required` keys. */
  map(
    node: Node | null | undefined,
    where: string,
    allowed: readonly string[],
    required: readonly string[] = [],
  ): Map<string, Node> {
    const out = new Map<string, Node>()
    if (!isMap(node)) {
      this.issue(node, `${where} must be a mapping`)
      return out
    }
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined
      if (key === undefined) {
        this.issue(pair.key as Node, `${where}: keys must be plain strings`)
        continue
      }
      if (!allowed.includes(key)) {
        this.issue(pair.key as Node, `${where}: unknown key '${key}' (expected one of: ${allowed.join(', ')})`)
        continue
      }
      out.set(key, (pair.value as Node | null) ?? (pair.key as Node))
    }
    for (const key of required) {
      if (!out.has(key)) this.issue(node, `${where}: missing required key '${key}'`)
    }
    return out
  }

  /** A mapping with arbitrary string keys (for example header or body-field conditions). */
  entries(node: Node | null | undefined, where: string): [string, Node][] {
    if (!isMap(node)) {
      this.issue(node, `${where} must be a mapping`)
      return []
    }
    const out: [string, Node][] = []
    for (const pair of node.items) {
      if (!isScalar(pair.key)) {
        this.issue(pair.key as Node, `${where}: keys must be plain strings`)
        continue
      }
      out.push([String(pair.key.value), (pair.value as Node | null) ?? (pair.key as Node)])
    }
    return out
  }

  list(node: Node | null | undefined, where: string): Node[] {
    if (!isSeq(node)) {
      this.issue(node, `${where} must be a list`)
      return []
    }
    return node.items as Node[]
  }

  string(node: Node | null | undefined, where: string): string {
    if (isScalar(node) && typeof node.value === 'string' && node.value !== '') return node.value
    // `owner: 42` or `env: yes` is a number or a boolean to YAML: say so rather than guess the text.
    if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
      this.issue(node, `${where} must be text; quote it ("${String(node.value)}") if that is what you mean`)
      return String(node.value)
    }
    this.issue(node, `${where} must be a non-empty string`)
    return ''
  }

  oneOf<T extends string>(node: Node | null | undefined, where: string, values: readonly T[]): T {
    const value = this.string(node, where)
    if ((values as readonly string[]).includes(value)) return value as T
    if (value !== '') this.issue(node, `${where} must be one of: ${values.join(', ')} (got '${value}')`)
    return values[0] as T
  }

  number(node: Node | null | undefined, where: string): number {
    if (isScalar(node) && typeof node.value === 'number' && Number.isFinite(node.value)) return node.value
    this.issue(node, `${where} must be a number`)
    return 0
  }

  /** A whole number within [min, max] (ports, counts, depths). */
  integer(node: Node | null | undefined, where: string, min: number, max: number): number {
    if (
      isScalar(node) &&
      typeof node.value === 'number' &&
      Number.isInteger(node.value) &&
      node.value >= min &&
      node.value <= max
    )
      return node.value
    this.issue(node, `${where} must be a whole number from ${min} to ${max}`)
    return min
  }

  boolean(node: Node | null | undefined, where: string): boolean {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value
    this.issue(node, `${where} must be true or false`)
    return false
  }

  /** A string, or a list of strings; always returned as a list. */
  strings(node: Node | null | undefined, where: string): string[] {
    if (isSeq(node)) return (node.items as Node[]).map((item, i) => this.string(item, `${where}[${i}]`))
    return [this.string(node, where)]
  }

  /** A plain JSON-like value (scalars, lists, maps), for condition operands. */
  value(node: Node | null | undefined): unknown {
    return node ? (node as { toJSON(): unknown }).toJSON() : null
  }

  /** Durations: 500ms, 30s, 5m, 2h, or a bare number of milliseconds. */
  duration(node: Node | null | undefined, where: string): number {
    if (isScalar(node) && typeof node.value === 'number' && node.value >= 0) return node.value
    const ms = isScalar(node) && typeof node.value === 'string' ? parseDuration(node.value) : undefined
    if (ms === undefined) this.issue(node, `${where} must be a duration such as 500ms, 30s, 5m or 2h`)
    return ms ?? 0
  }

  /** Sizes: 512, 64KiB, 1MiB. */
  bytes(node: Node | null | undefined, where: string): number {
    if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value) && node.value >= 0)
      return node.value
    const n = isScalar(node) && typeof node.value === 'string' ? parseBytes(node.value) : undefined
    if (n === undefined) this.issue(node, `${where} must be a size such as 4096, 64KiB or 1MiB`)
    return n ?? 0
  }
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim())
  if (!m) return undefined
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] as number))
}

const BYTE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1000, MB: 1000 ** 2 }
export function parseBytes(text: string): number | undefined {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB|KB|MB)?$/.exec(text.trim())
  if (!m) return undefined
  return Number(m[1]) * (BYTE_UNITS[m[2] ?? 'B'] as number)
}
