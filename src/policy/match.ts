/**
 * A `match:` block (rules and limits alike) → the checks a request must pass, plus the agents,
 * connectors and actions it names, by which rules and limits are indexed. Unknown agents,
 * connectors, actions and time zones are errors with their position.
 */
import { pathText, type YamlReader } from '../config/yaml-reader.ts'
import type { AgentRegistry } from '../registry/agents.ts'
import type { ConnectorCatalog } from '../registry/connectors.ts'
import { COST_CLASSES, TIERS } from '../registry/risk.ts'
import { readPath, type FieldRead } from '../request/fields.ts'
import { compileCondition, fieldPath, type CompiledCondition } from './conditions.ts'
import type { RequestFacts } from './facts.ts'
import type { RuleEntry } from './policy-schema.ts'

export interface RuleCheck {
  readonly describe: string
  readonly test: (facts: RequestFacts) => boolean
}

/** Action-name globs: `*` matches any run of characters, everything else is literal. */
export function globToRegExp(globs: readonly string[]): RegExp {
  const parts = globs.map((g) =>
    g
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*'),
  )
  return new RegExp(`^(?:${parts.join('|')})$`)
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const

export type MatchEntry = NonNullable<RuleEntry['match']>

/** What a `match:` block compiles to: the checks, plus what rules and limits are indexed by. */
export interface CompiledMatch {
  readonly checks: readonly RuleCheck[]
  readonly agents: ReadonlySet<string> | null
  readonly connectors: ReadonlySet<string> | null
  readonly actions: RegExp | null
  readonly readsBody: boolean
}

/** Compiles a rule's or a limit's `match:`; `denies`: an empty `all` holds (the safe reading when it refuses or limits). */
export function compileMatch(
  r: YamlReader,
  m: MatchEntry | undefined,
  mat: readonly PropertyKey[],
  where: string,
  registry: AgentRegistry,
  catalog: ConnectorCatalog,
  denies: boolean,
): CompiledMatch {
  const checks: RuleCheck[] = []
  let agents: ReadonlySet<string> | null = null
  let connectors: ReadonlySet<string> | null = null
  let actions: RegExp | null = null
  let readsBody = false

  if (m) {
    const set = (
      key: keyof typeof m & string,
      values: readonly string[] | undefined,
      valid?: (v: string) => boolean,
    ) => {
      if (values === undefined) return null
      for (const v of values)
        if (valid && !valid(v)) r.issueAt([...mat, key], `${where}.${key}: unknown ${key.replace(/s$/, '')} '${v}'`)
      return new Set(values)
    }
    agents = set('agents', m.agents, (v) => registry.agents.has(v))
    const tiers = set('tiers', m.tiers, (v) => (TIERS as readonly string[]).includes(v))
    const owners = set('owners', m.owners)
    const users = set('users', m.users)
    const userGroups = set('user_groups', m.user_groups)
    connectors = set('connectors', m.connectors, (v) => catalog.connectors.has(v))
    if (m.actions) {
      actions = globToRegExp(m.actions)
      const scope = [...catalog.connectors.values()].filter((c) => connectors === null || connectors.has(c.id))
      for (const glob of m.actions) {
        const re = globToRegExp([glob])
        if (!scope.some((c) => c.actions.some((a) => re.test(a.name))))
          r.issueAt(
            [...mat, 'actions'],
            `${where}.actions: '${glob}' matches no declared action of ${connectors ? [...connectors].join(', ') : 'any connector'}`,
          )
      }
    }
    if (m.cost !== undefined) {
      const given = m.cost
      const classes = new Set<string>(
        typeof given === 'string'
          ? [given]
          : Array.isArray(given)
            ? given
            : COST_CLASSES.slice(COST_CLASSES.indexOf(given.above) + 1),
      )
      if (classes.size === 0) r.issueAt([...mat, 'cost'], `${where}.cost: nothing is above 'high'`)
      checks.push({
        describe: `cost in [${[...classes].join(', ')}]`,
        test: (x) => x.action !== null && x.action.cost !== null && classes.has(x.action.cost),
      })
    }
    if (agents) {
      const a = agents
      checks.push({ describe: `agent in [${[...a].join(', ')}]`, test: (x) => a.has(x.agent.id) })
    }
    if (tiers) checks.push({ describe: `tier in [${[...tiers].join(', ')}]`, test: (x) => tiers.has(x.agent.tier) })
    if (owners)
      checks.push({ describe: `owner in [${[...owners].join(', ')}]`, test: (x) => owners.has(x.agent.owner) })
    if (users)
      checks.push({
        describe: `user in [${[...users].join(', ')}]`,
        test: (x) => x.user !== null && users.has(x.user.id),
      })
    if (userGroups) {
      checks.push({
        describe: `user in a group of [${[...userGroups].join(', ')}]`,
        test: (x) => x.user !== null && x.user.groups.some((g) => userGroups.has(g)),
      })
    }
    const fieldChecks = (
      key: 'params' | 'query' | 'headers' | 'body',
      read: (path: readonly string[]) => (x: RequestFacts) => FieldRead,
      nested: boolean,
    ): void => {
      for (const [name, spec] of Object.entries(m[key] ?? {})) {
        const specAt = [...mat, key, name]
        const path = nested ? fieldPath(name) : [key === 'headers' ? name.toLowerCase() : name]
        if (typeof path === 'string') {
          r.issueAt(specAt, `${where}.${key}: ${path}`)
          continue
        }
        const c: CompiledCondition | string = compileCondition(spec, {
          field: `${key}.${path.join('.')}`,
          many: path.includes('*'),
          denies,
        })
        if (typeof c === 'string') {
          r.issueAt(specAt, `${where}: ${c}`)
          continue
        }
        const get = read(path)
        checks.push({ describe: c.describe, test: (x) => c.test(get(x)) })
      }
    }
    const one = (value: unknown): FieldRead => ({ many: false, value })
    fieldChecks(
      'params',
      ([name]) =>
        (x) =>
          one(x.params[name as string]),
      false,
    )
    fieldChecks('query', (path) => (x) => readPath(x.query, path), true)
    fieldChecks(
      'headers',
      ([name]) =>
        (x) =>
          one(x.headers.get(name as string)),
      false,
    )
    fieldChecks(
      'body',
      (path) => {
        readsBody = true
        return (x) => readPath(x.body, path)
      },
      true,
    )
    if (m.time) checks.push(compileTimeWindow(r, m.time, [...mat, 'time']))
  }

  return { checks, agents, connectors, actions, readsBody }
}

type TimeEntry = NonNullable<NonNullable<RuleEntry['match']>['time']>

function compileTimeWindow(r: YamlReader, f: TimeEntry, at: readonly PropertyKey[]): RuleCheck {
  const where = pathText('', at)
  const days = f.days ? new Set(f.days.map((d) => d.toLowerCase())) : null
  for (const d of days ?? [])
    if (!(DAYS as readonly string[]).includes(d))
      r.issueAt([...at, 'days'], `${where}.days: unknown day '${d}' (use ${DAYS.join(', ')})`)
  let from = 0
  let to = 24 * 60
  if (f.hours !== undefined) {
    const [h1, m1, h2, m2] = f.hours.split(/[:-]/).map(Number) as [number, number, number, number]
    from = h1 * 60 + m1
    to = h2 * 60 + m2
    if (from >= to || to > 24 * 60)
      r.issueAt([...at, 'hours'], `${where}.hours: the window must start before it ends, within one day`)
  }
  const timeZone = f.timezone ?? 'UTC'
  const formatIn = (zone: string) =>
    new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
  let format: Intl.DateTimeFormat
  try {
    format = formatIn(timeZone)
  } catch {
    r.issueAt([...at, 'timezone'], `${where}.timezone: unknown time zone '${timeZone}'`)
    format = formatIn('UTC')
  }
  const describe = `time within ${days ? [...days].join('/') : 'any day'} ${f.hours ?? 'all day'} ${timeZone}`
  return {
    describe,
    test: (x) => {
      const parts = format.formatToParts(x.now)
      const part = (type: string): string => parts.find((p) => p.type === type)?.value ?? ''
      const minute = Number(part('hour')) * 60 + Number(part('minute'))
      return (days === null || days.has(part('weekday').toLowerCase())) && minute >= from && minute < to
    },
  }
}
