/**
 * OpenTelemetry's semantic-conventions registry as @opentelemetry/semantic-conventions publishes it
 * (generated from the registry itself): every attribute name with whether it is deprecated, the
 * defined values of enumerated attributes, and metric names. Read from the package's declaration
 * files, where each name is a constant with its documentation (`@deprecated` included), so that
 * a deprecated name fails the check as an unknown one does. Names whose definition moved to a
 * conventions repository of its own (the GenAI ones, `gen_ai.*`) keep their name and count as defined.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

export interface SemconvRegistry {
  /** Attribute name → whether the registry deprecates it. */
  readonly attributes: ReadonlyMap<string, { readonly deprecated: boolean }>
  /** Enumerated attribute name → its defined values. */
  readonly values: ReadonlyMap<string, ReadonlySet<string>>
  /** Metric name → whether the registry deprecates it. */
  readonly metrics: ReadonlyMap<string, { readonly deprecated: boolean }>
}

/** `/** doc *\/ declare const NAME: "value";`, the shape of every registry constant in the declarations. */
const DECLARATION = /\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*declare const ([A-Z0-9_]+): "([^"]*)";/g
const ENUM_OF = /Enum value "[^"]*" for attribute \{@link (ATTR_[A-Z0-9_]+)\}/

let loaded: SemconvRegistry | null = null

export function semconvRegistry(): SemconvRegistry {
  if (loaded !== null) return loaded
  const dist = dirname(createRequire(import.meta.url).resolve('@opentelemetry/semantic-conventions'))
  const attributes = new Map<string, { deprecated: boolean }>()
  const metrics = new Map<string, { deprecated: boolean }>()
  const enumMembers: { attributeConstant: string; value: string }[] = []
  const attributeByConstant = new Map<string, string>()
  for (const file of ['stable_attributes', 'experimental_attributes', 'stable_metrics', 'experimental_metrics']) {
    const text = readFileSync(join(dist, `${file}.d.mts`), 'utf8')
    for (const [, doc, constant, value] of text.matchAll(DECLARATION) as IterableIterator<
      [string, string, string, string]
    >) {
      // "Moved to" another conventions repository (the GenAI names) keeps the name: not a deprecation.
      const deprecated = /@deprecated(?! Moved to )/.test(doc)
      if (constant.startsWith('ATTR_')) {
        attributes.set(value, { deprecated })
        attributeByConstant.set(constant, value)
      } else if (constant.startsWith('METRIC_')) metrics.set(value, { deprecated })
      else {
        const of = ENUM_OF.exec(doc)
        if (of !== null) enumMembers.push({ attributeConstant: of[1] as string, value })
      }
    }
  }
  const values = new Map<string, Set<string>>()
  for (const { attributeConstant, value } of enumMembers) {
    const attribute = attributeByConstant.get(attributeConstant)
    if (attribute === undefined) continue
    const set = values.get(attribute) ?? new Set<string>()
    set.add(value)
    values.set(attribute, set)
  }
  // A registry that read as nearly empty means the package's layout changed, not that every name is unknown.
  if (attributes.size < 500 || metrics.size < 50 || !values.has('http.request.method'))
    throw new Error(`the semantic-conventions registry did not read as expected from ${dist}`)
  loaded = { attributes, values, metrics }
  return loaded
}

interface OtlpAttribute {
  readonly key: string
  readonly value: { readonly stringValue?: string; readonly intValue?: string }
}
export interface OtlpSpanLike {
  readonly name: string
  readonly kind: number
  readonly attributes: readonly OtlpAttribute[]
  readonly status?: { readonly code?: number }
}

/** The attributes the HTTP conventions require of every server and every client span. */
const REQUIRED_BY_KIND: Record<number, readonly string[]> = {
  2: ['http.request.method', 'url.scheme', 'url.path'],
  3: ['http.request.method', 'server.address', 'server.port', 'url.full'],
}
/** Enumerated attributes whose conventions allow no value outside the list (`_OTHER` stands for the rest). */
const CLOSED_ENUMS = ['http.request.method']

/**
 * What in a span departs from the registry: a name it does not define or deprecates (outside
 * `ownPrefix`, the project's namespace), a name given twice, a value outside a closed enumeration,
 * an attribute the HTTP conventions require of its kind missing, a failure without `error.type`.
 */
export function semconvProblems(span: OtlpSpanLike, ownPrefix: string): string[] {
  const registry = semconvRegistry()
  const problems: string[] = []
  const where = `span "${span.name}"`
  const seen = new Set<string>()
  for (const { key, value } of span.attributes) {
    if (seen.has(key)) problems.push(`${where}: ${key} given twice`)
    seen.add(key)
    if (key.startsWith(ownPrefix)) continue
    const known = registry.attributes.get(key)
    if (known === undefined) problems.push(`${where}: ${key} is not in the registry`)
    else if (known.deprecated) problems.push(`${where}: ${key} is deprecated`)
    const allowed = CLOSED_ENUMS.includes(key) ? registry.values.get(key) : undefined
    const text = value.stringValue ?? value.intValue
    if (allowed !== undefined && (text === undefined || !allowed.has(text)))
      problems.push(`${where}: ${key} = ${text} is not one of its defined values`)
  }
  for (const key of REQUIRED_BY_KIND[span.kind] ?? [])
    if (!seen.has(key)) problems.push(`${where}: ${key} is required of this kind of span and missing`)
  if (span.status?.code === 2 && !seen.has('error.type')) problems.push(`${where}: failed without error.type`)
  return problems
}

/**
 * What in a scrape departs from the registry: a metric outside `ownPrefix` and `standardPrefixes`
 * whose name is no registry metric as Prometheus spells it (dots as underscores, the unit `s` as
 * `_seconds`), or whose labels (other than `le` and the project's own, `ownPrefix`) are not
 * registry attributes so spelled. Families in `ownPrefix` are the project's own, labels and all;
 * those in `standardPrefixes` are named by Prometheus's own conventions for client libraries (the
 * process and runtime collectors), not by OpenTelemetry's.
 */
export function metricNamingProblems(
  samples: readonly [string, Record<string, string>, number][],
  ownPrefix: string,
  standardPrefixes: readonly string[] = [],
): string[] {
  const registry = semconvRegistry()
  const spelled = (name: string) => name.replaceAll('.', '_')
  const metricNames = new Set([...registry.metrics].filter(([, m]) => !m.deprecated).map(([name]) => spelled(name)))
  const labelNames = new Set([...registry.attributes].filter(([, a]) => !a.deprecated).map(([name]) => spelled(name)))
  const problems = new Set<string>()
  for (const [sample, labels] of samples) {
    if (sample.startsWith(ownPrefix) || standardPrefixes.some((p) => sample.startsWith(p))) continue
    const family = sample.replace(/_(bucket|count|sum|total)$/, '')
    if (!metricNames.has(family.replace(/_seconds$/, ''))) problems.add(`${family} is not a registry metric`)
    for (const label of Object.keys(labels))
      if (label !== 'le' && !label.startsWith(ownPrefix) && !labelNames.has(label))
        problems.add(`${family}: label ${label} is not a registry attribute`)
  }
  return [...problems]
}
