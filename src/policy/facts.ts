/**
 * What the policy sees of a request: the canonical request (request/), the agent and the user
 * it acts for. Built once per request, the same way for live traffic, `policy explain` /
 * `policy test` and the approval re-check, never by the evaluator itself.
 */
import type { Agent } from '../registry/agents.ts'
import type { Connector } from '../registry/connectors.ts'
import type { CanonicalRequest } from '../request/canonical-request.ts'
import type { RequestPart } from '../request/parts.ts'

export interface DelegatedUser {
  readonly id: string
  readonly groups: readonly string[]
}

/** A request, or one part of a batch or GraphQL request, as the policy reads it (request/parts.ts), with who asks. */
export interface RequestFacts extends Omit<RequestPart, 'label'> {
  readonly agent: Agent
  readonly user: DelegatedUser | null
  readonly connector: Connector
  /** Milliseconds since the epoch at which the request is decided. */
  readonly now: number
  /** The requests a batch or GraphQL request carries, each decided as its own action (empty otherwise). */
  readonly parts: readonly RequestFacts[]
  /** For a part: where it sits in its request (`requests[2] DELETE /me/x`, `mutation issueDelete`). */
  readonly label?: string
}

const NO_PARTS: readonly RequestFacts[] = []

/** The facts of a canonical request, once the agent, the user and the action are known. */
export function requestFacts(
  request: CanonicalRequest,
  agent: Agent,
  user: DelegatedUser | null,
  now: number,
): RequestFacts {
  return {
    agent,
    user,
    connector: request.connector,
    action: request.action,
    method: request.method,
    path: request.path,
    params: request.params,
    query: request.query.tree,
    headers: request.headerView,
    body: request.bodyFields,
    now,
    parts:
      request.parts === null
        ? NO_PARTS
        : request.parts.map((part) => ({
            agent,
            user,
            connector: request.connector,
            action: part.action,
            method: part.method,
            path: part.path,
            params: part.params,
            query: part.query,
            headers: part.headers,
            body: part.body,
            now,
            parts: [],
            label: part.label,
          })),
  }
}
