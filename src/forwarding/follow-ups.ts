/**
 * Follow-up URLs: upstreams hand out absolute URLs that SDKs call next (an upload URL, a next
 * page in `@odata.nextLink`, `Link: <…>; rel="next"`, a `Location`). Called as given, the next
 * request would go straight to the upstream with the agent's Corridor key, unpolicied and
 * unaudited, and the key would leave. So every absolute URL in a response that points at a
 * connector's upstream (its origin and base path, any connector of the catalog) is rewritten to
 * the Corridor URL that reaches it through that connector, and the follow-up call is decided,
 * credentialed and audited like any other. An absolute URL under a follow-up key that points
 * nowhere Corridor knows is reported (its origin only: such URLs often carry signed tokens).
 *
 * JSON bodies are buffered to be rewritten (up to MAX_REWRITE_BYTES; larger ones pass as they
 * are); a body without `http` in it is passed on byte for byte.
 */
import type { Connector, ConnectorCatalog } from '../registry/connectors.ts'

export const MAX_REWRITE_BYTES = 1024 * 1024

/** Keys under which APIs hand out URLs that SDKs follow: reported when they point outside Corridor. */
const FOLLOW_UP_KEYS = new Set([
  'next',
  'prev',
  'previous',
  'nextlink',
  '@odata.nextlink',
  'deltalink',
  '@odata.deltalink',
  'next_page_url',
  'nextpageurl',
  'next_url',
  'upload_url',
  'uploadurl',
  'location',
])

interface Target {
  /** Origin plus base path, e.g. https://api.example.com/v1 (no trailing slash). */
  readonly prefix: string
  readonly connector: Connector
}

const tables = new WeakMap<ConnectorCatalog, readonly Target[]>()

/** The catalog's upstream prefixes, longest first, so a connector on a deeper base path wins. */
function targetsOf(catalog: ConnectorCatalog): readonly Target[] {
  let table = tables.get(catalog)
  if (table === undefined) {
    table = [...catalog.connectors.values()]
      .filter((c) => c.origin !== '')
      .map((c) => ({ prefix: c.origin + c.basePath, connector: c }))
      .sort((a, b) => b.prefix.length - a.prefix.length)
    tables.set(catalog, table)
  }
  return table
}

export interface FollowUpFinding {
  readonly key: string
  readonly origin: string
}

export class FollowUps {
  readonly #targets: readonly Target[]
  /** How the agent reaches Corridor, e.g. https://corridor.internal:8443 (no trailing slash). */
  readonly #base: string
  readonly findings: FollowUpFinding[] = []

  constructor(catalog: ConnectorCatalog, base: string) {
    this.#targets = targetsOf(catalog)
    this.#base = base
  }

  /** The Corridor URL for an absolute upstream URL, or null when it points at no connector. */
  url(value: string): string | null {
    if (!value.startsWith('http://') && !value.startsWith('https://')) return null
    for (const { prefix, connector } of this.#targets) {
      if (!value.startsWith(prefix)) continue
      const rest = value.slice(prefix.length)
      // The prefix must end at a path boundary: https://api.x/v1 is not a prefix of https://api.x/v10.
      if (rest !== '' && !'/?#'.includes(rest[0] as string)) continue
      return `${this.#base}/${connector.id}${rest.startsWith('/') ? rest : `/${rest}`}`
    }
    return null
  }

  /** Location and Content-Location: an absolute URL; Link: URLs in angle brackets. */
  header(name: string, value: string): string {
    if (name === 'location' || name === 'content-location') return this.url(value) ?? value
    if (name === 'link') return value.replace(/<([^>]*)>/g, (_whole, url: string) => `<${this.url(url) ?? url}>`)
    return value
  }

  /** The JSON body with upstream URLs rewritten; the same bytes when nothing was. */
  json(body: Buffer): Buffer {
    if (!body.includes('http')) return body
    let value: unknown
    try {
      value = JSON.parse(body.toString('utf8'))
    } catch {
      return body // not JSON after all: relayed as it came
    }
    // An object, not a let: the walk's closure sets it, which narrowing cannot see.
    const state = { changed: false }
    const walk = (node: unknown, key: string): unknown => {
      if (typeof node === 'string') {
        const rewritten = this.url(node)
        if (rewritten !== null) {
          state.changed = true
          return rewritten
        }
        if (FOLLOW_UP_KEYS.has(key.toLowerCase()) && /^https?:\/\//.test(node)) this.#report(key, node)
        return node
      }
      if (Array.isArray(node)) return node.map((item) => walk(item, key))
      if (node !== null && typeof node === 'object') {
        const out: Record<string, unknown> = {}
        for (const [k, v] of Object.entries(node)) out[k] = walk(v, k)
        return out
      }
      return node
    }
    const rewritten = walk(value, '')
    return state.changed ? Buffer.from(JSON.stringify(rewritten)) : body
  }

  #report(key: string, url: string): void {
    try {
      this.findings.push({ key, origin: new URL(url).origin })
    } catch {
      // not a URL after all
    }
  }
}

/** Whether a response's body is JSON Corridor may rewrite. */
export function isJson(contentType: string | string[] | undefined): boolean {
  if (typeof contentType !== 'string') return false
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? ''
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))
}
