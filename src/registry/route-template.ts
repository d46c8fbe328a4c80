/**
 * Declared connector actions are `METHOD /path/{param}/...` templates. They are compiled into
 * a segment trie, so matching a request costs one walk down its path whatever the number of
 * actions. Literal segments win over `{param}`, which wins over a trailing `{rest+}`.
 */

export interface RouteMatch<T> {
  value: T
  params: Record<string, string>
}

interface TrieNode<T> {
  literals: Map<string, TrieNode<T>>
  param: { name: string; node: TrieNode<T> } | null
  rest: { name: string; byMethod: Map<string, T> } | null
  byMethod: Map<string, T>
}

function newNode<T>(): TrieNode<T> {
  return { literals: new Map(), param: null, rest: null, byMethod: new Map() }
}

const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)(\+)?\}$/
const LITERAL = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]+$/

export class RouteTrie<T> {
  readonly #root: TrieNode<T> = newNode()

  /** Adds a template; returns an error message instead of throwing, for positioned reporting. */
  add(method: string, template: string, value: T): string | null {
    if (!template.startsWith('/')) return `path template must start with '/'`
    const parts = template === '/' ? [] : template.slice(1).split('/')
    let node = this.#root
    const names = new Set<string>()
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string
      const p = PARAM.exec(part)
      if (p) {
        const name = p[1] as string
        if (names.has(name)) return `parameter '{${name}}' appears twice`
        names.add(name)
        if (p[2]) {
          if (i !== parts.length - 1) return `'{${name}+}' must be the last segment`
          node.rest ??= { name, byMethod: new Map() }
          if (node.rest.name !== name) return `conflicting rest parameter names at the same position`
          if (node.rest.byMethod.has(method)) return `duplicate action for ${method} ${template}`
          node.rest.byMethod.set(method, value)
          return null
        }
        node.param ??= { name, node: newNode() }
        if (node.param.name !== name)
          return `conflicting parameter names '{${node.param.name}}' and '{${name}}' at the same position`
        node = node.param.node
      } else {
        if (!LITERAL.test(part)) return `segment '${part}' is not a valid literal or {param}`
        let next = node.literals.get(part)
        if (!next) node.literals.set(part, (next = newNode()))
        node = next
      }
    }
    if (node.byMethod.has(method)) return `duplicate action for ${method} ${template}`
    node.byMethod.set(method, value)
    return null
  }

  match(method: string, segments: readonly string[]): RouteMatch<T> | null {
    const params: Record<string, string> = {}
    const value = this.#walk(this.#root, method, segments, 0, params)
    return value === undefined ? null : { value, params }
  }

  #walk(
    node: TrieNode<T>,
    method: string,
    segments: readonly string[],
    i: number,
    params: Record<string, string>,
  ): T | undefined {
    if (i === segments.length) return node.byMethod.get(method)
    const segment = segments[i] as string
    const literal = node.literals.get(segment)
    if (literal) {
      const found = this.#walk(literal, method, segments, i + 1, params)
      if (found !== undefined) return found
    }
    if (node.param) {
      const found = this.#walk(node.param.node, method, segments, i + 1, params)
      if (found !== undefined) {
        params[node.param.name] = segment
        return found
      }
    }
    if (node.rest) {
      const found = node.rest.byMethod.get(method)
      if (found !== undefined) {
        params[node.rest.name] = segments.slice(i).join('/')
        return found
      }
    }
    return undefined
  }
}
