/**
 * What the policy sees of a request. Built once per request by the pipeline (or by
 * `policy explain` / `policy test` from a description), never by the evaluator itself.
 */
import type { Agent } from '../registry/agents.ts'
import type { Action, Connector } from '../registry/connectors.ts'

export interface DelegatedUser {
  readonly id: string
  readonly groups: readonly string[]
}

export interface RequestFacts {
  readonly agent: Agent
  readonly user: DelegatedUser | null
  readonly connector: Connector
  /** The declared action the request maps to; null when it maps to none (outside the connector's scope). */
  readonly action: Action | null
  readonly method: string
  /** Canonical path relative to the connector. */
  readonly path: string
  readonly params: Readonly<Record<string, string>>
  /** Query parameters, each with every value it was given. */
  readonly query: ReadonlyMap<string, readonly string[]>
  /** Lower-case header name → value (duplicates of security-relevant headers are refused earlier). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Parsed JSON body, or undefined when there is none or it is not JSON. */
  readonly body: unknown
  /** Milliseconds since the epoch at which the request is decided. */
  readonly now: number
}

/** Parses a raw query string into name → values, decoding as form-urlencoded (as upstream frameworks do). */
export function parseQuery(raw: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  if (raw === '') return out
  for (const [name, value] of new URLSearchParams(raw)) {
    const values = out.get(name)
    if (values) values.push(value)
    else out.set(name, [value])
  }
  return out
}

export const NO_QUERY: ReadonlyMap<string, readonly string[]> = new Map()
