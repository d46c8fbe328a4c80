/**
 * A stop: an operator's order that an agent, a team, a connector, an action, a delegated user
 * (or every request) be refused, or served reads only, until it is resumed or expires. Stops are
 * values; which one applies to a request is decided here, purely, by every replica alike.
 */
import type { Risk } from '../registry/risk.ts'

/**
 * - stop: refuse everything in scope;
 * - read_only: only actions declared `risk: read` pass.
 * A connector turned off for one agent is a stop scoped to that agent and connector.
 */
export const STOP_MODES = ['stop', 'read_only'] as const
export type StopMode = (typeof STOP_MODES)[number]

/** Every field given must match; none given: every request (a global stop). `action` needs `connector`. */
export interface StopScope {
  readonly owner?: string
  readonly agent?: string
  readonly connector?: string
  readonly action?: string
  readonly user?: string
}

export const SCOPE_KEYS = ['owner', 'agent', 'connector', 'action', 'user'] as const

export interface Stop {
  readonly id: string
  readonly scope: StopScope
  readonly mode: StopMode
  readonly reason: string
  /** The operator who ordered it, and how they authenticated. */
  readonly by: string
  readonly via: string
  readonly since: number
  /** Milliseconds since the epoch, or null: until resumed. */
  readonly expiresAt: number | null
}

/** What a stop is matched against: known once the request is routed and its agent identified. */
export interface StopSubject {
  readonly agent: string
  readonly owner: string
  readonly connector: string | null
  readonly action: string | null
  /** The action's declared risk (read, write…), or null when the request matches no declared action. */
  readonly risk: Risk | string | null
  readonly user: string | null
}

function inScope(scope: StopScope, s: Pick<StopSubject, 'agent' | 'owner' | 'connector' | 'action' | 'user'>): boolean {
  return (
    (scope.agent === undefined || scope.agent === s.agent) &&
    (scope.owner === undefined || scope.owner === s.owner) &&
    (scope.connector === undefined || scope.connector === s.connector) &&
    (scope.action === undefined || scope.action === s.action) &&
    (scope.user === undefined || scope.user === s.user)
  )
}

export function isLive(stop: Stop, now: number): boolean {
  return stop.expiresAt === null || now < stop.expiresAt
}

/**
 * The stop that refuses this request, or null. A full stop wins over a read-only one; a request
 * whose risk is unknown (no declared action) is not a read.
 */
export function stopFor(stops: readonly Stop[], subject: StopSubject, now: number): Stop | null {
  let readOnly: Stop | null = null
  for (const stop of stops) {
    if (!isLive(stop, now) || !inScope(stop.scope, subject)) continue
    if (stop.mode === 'stop') return stop
    if (subject.risk !== 'read') readOnly ??= stop
  }
  return readOnly
}

/** `global`, or `agent:billing-bot connector:billing`. */
export function scopeText(scope: StopScope): string {
  const parts = SCOPE_KEYS.filter((k) => scope[k] !== undefined).map((k) => `${k}:${scope[k] as string}`)
  return parts.length === 0 ? 'global' : parts.join(' ')
}

/** Whether some request could be covered by both scopes (every field both fix agrees). */
export function overlaps(a: StopScope, b: StopScope): boolean {
  return SCOPE_KEYS.every((k) => a[k] === undefined || b[k] === undefined || a[k] === b[k])
}
