/**
 * Reads YAML documents with positions, so that every problem in a file a security team edits
 * is reported as `file:line:column: message`, all at once, instead of the first one only.
 * What a file may hold is declared once per format with zod (schema-types.ts); `parse` checks a
 * document against it and places each problem on the key or value at fault.
 */
import { readFileSync } from 'node:fs'
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node } from 'yaml'
import type * as z from 'zod'
import { describeInput } from './schema-types.ts'

export interface ConfigIssue {
  file: string
  line: number
  col: number
  message: string
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code = 'config_invalid'
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

  /** The node at a path of keys and indices, or the nearest one above it that exists. */
  nodeAt(path: readonly PropertyKey[]): Node | null {
    for (let n = path.length; n >= 0; n--) {
      // getIn gives back a plain value, not a node, where the path ends in a scalar's value.
      const node: unknown = this.doc.getIn(path.slice(0, n), true)
      if (node !== null && typeof node === 'object') return node as Node
    }
    return this.root
  }

  /** Reports a problem at the node a path leads to (for checks that span fields or files). */
  issueAt(path: readonly PropertyKey[], message: string): void {
    this.issue(this.nodeAt(path), message)
  }

  /**
   * Checks the whole document against its format and returns the typed, converted value, or
   * null after reporting every problem (each at the position of the key or value at fault).
   */
  parse<S extends z.ZodType>(schema: S, label: string): z.output<S> | null {
    // Syntax errors are already reported, and a broken document's values mean little.
    if (this.doc.errors.length > 0) return null
    const result = schema.safeParse(this.doc.toJS({ maxAliasCount: 100 }), { reportInput: true })
    if (result.success) return result.data
    for (const issue of result.error.issues) this.#report(issue, label)
    return null
  }

  /**
   * After `parse` failed: the elements of the list at `path` that are well-formed on their own,
   * with their indices, so that checks across elements (duplicate ids, unknown references) still
   * run and every problem in the file is reported at once.
   */
  wellFormedEntries<S extends z.ZodType>(path: readonly PropertyKey[], element: S): [z.output<S>, number][] {
    if (this.doc.errors.length > 0) return []
    let list: unknown = this.doc.toJS({ maxAliasCount: 100 })
    for (const key of path)
      list = list !== null && typeof list === 'object' ? (list as Record<PropertyKey, unknown>)[key] : undefined
    if (!Array.isArray(list)) return []
    const out: [z.output<S>, number][] = []
    list.forEach((item, i) => {
      const result = element.safeParse(item)
      if (result.success) out.push([result.data, i])
    })
    return out
  }

  #report(issue: z.core.$ZodIssue, label: string): void {
    const path = issue.path
    const where = pathText(label, path)
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        this.issue(this.#keyNode(path, key), `${where}: unknown key '${key}' (${issue.message})`)
      return
    }
    if (issue.input === undefined && path.length > 0 && this.#lacksKey(path)) {
      const parent = path.slice(0, -1)
      this.issueAt(parent, `${pathText(label, parent)}: missing required key '${String(path.at(-1))}'`)
      return
    }
    this.issueAt(path, `${where} ${messageFor(issue)}`)
  }

  /** Whether the mapping holding the last key of `path` exists and does not have that key. */
  #lacksKey(path: readonly PropertyKey[]): boolean {
    const parent = this.doc.getIn(path.slice(0, -1), true)
    return isMap(parent) && !parent.has(path.at(-1))
  }

  #keyNode(path: readonly PropertyKey[], key: string): Node | null {
    const map = this.doc.getIn(path, true)
    if (isMap(map)) {
      const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key)
      if (pair) return pair.key as Node
    }
    return this.nodeAt(path)
  }
}

/** `rules[2].match.body`, or the file's label for the document itself. */
export function pathText(label: string, path: readonly PropertyKey[]): string {
  if (path.length === 0) return label
  let out = ''
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : `${out === '' ? '' : '.'}${String(key)}`
  return out
}

const KIND: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a non-empty string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
}

/** Messages written for the format start with "must"; zod's own generic ones are rephrased. */
function messageFor(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.expected === 'string') {
    // `owner: 42` or `env: yes` is a number or a boolean to YAML: say so rather than guess the text.
    if (typeof issue.input === 'number' || typeof issue.input === 'boolean')
      return `must be text; quote it ("${String(issue.input)}") if that is what you mean`
  }
  // Messages written for the format (and every refinement's) read on from the field name.
  if (issue.message.startsWith('must') || issue.code === 'custom') return issue.message
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${KIND[issue.expected] ?? issue.expected}`
    case 'invalid_value':
      return issue.values.length === 1
        ? `must be ${describeInput(issue.values[0])}`
        : `must be one of: ${issue.values.map((v) => String(v)).join(', ')} (got ${describeInput(issue.input)})`
    default:
      return `is invalid: ${issue.message}`
  }
}
