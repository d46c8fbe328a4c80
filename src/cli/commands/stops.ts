/**
 * `corridor stop | resume | stops`: the operators' kill switch, a thin client of the admin API
 * (any replica; every other one applies the stop within a second). The operator key comes from
 * CORRIDOR_OPERATOR_TOKEN.
 *
 *   corridor stop --agent billing-bot --reason "…" [--mode read-only] [--for 2h] [--dry-run]
 *   corridor stop --connector billing --mode read-only --reason "…"
 *   corridor stop --global --reason "…"
 *   corridor resume (STOP_ID | --agent … | --connector … | --global …) --reason "…"
 *   corridor stops [--json]
 */
import { ADMIN_OPTION, adminClient, printFailure, type AdminCall } from '../admin-client.ts'
import { SCOPE_KEYS, scopeText } from '../../controls/stop.ts'
import { CONFIG_OPTION, UsageError, type Command, type CommandContext, type Print } from '../command.ts'

const SCOPE_OPTIONS = {
  agent: { type: 'string' },
  owner: { type: 'string' },
  connector: { type: 'string' },
  action: { type: 'string' },
  user: { type: 'string' },
  global: { type: 'boolean' },
} as const

function scopeOf(values: CommandContext['values']): Record<string, string> {
  const scope: Record<string, string> = {}
  for (const key of SCOPE_KEYS) if (typeof values[key] === 'string') scope[key] = values[key]
  const global = values['global'] === true
  if (global === Object.keys(scope).length > 0)
    throw new UsageError('name a scope (--agent, --owner, --connector, --action, --user) or --global, not both')
  return scope
}

function reasonOf(values: CommandContext['values']): string {
  const reason = values['reason']
  if (typeof reason !== 'string' || reason.trim() === '')
    throw new UsageError('--reason "…" is required: every stop and resume is audited with its reason')
  return reason
}

async function operatorClient(ctx: CommandContext): Promise<AdminCall | null> {
  const token = ctx.env['CORRIDOR_OPERATOR_TOKEN']
  if (token === undefined || token === '') {
    ctx.err('set CORRIDOR_OPERATOR_TOKEN to your operator key (cop_…)')
    return null
  }
  return adminClient(ctx, token)
}

function printStop(s: Record<string, unknown>, out: Print): void {
  out(
    `${String(s.id)}  ${String(s.scope_text).padEnd(30)} ${String(s.mode).padEnd(9)} since ${String(s.since)} by ${String(s.by)}${s.expires_at ? ` until ${String(s.expires_at)}` : ''}\n    reason: ${String(s.reason)}`,
  )
}

export const stopCommand: Command = {
  words: ['stop'],
  usage:
    'corridor stop (--agent ID | --owner TEAM | --connector ID [--action NAME] | --user ID | --global) --reason "…" [--mode stop|read-only] [--for 2h] [--dry-run] [--admin URL] [--json]\n      (authenticates with CORRIDOR_OPERATOR_TOKEN: an operator key)',
  options: {
    ...CONFIG_OPTION,
    ...ADMIN_OPTION,
    ...SCOPE_OPTIONS,
    reason: { type: 'string' },
    mode: { type: 'string' },
    for: { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const { values, out, err } = ctx
    const scope = scopeOf(values)
    const reason = reasonOf(values)
    const mode = values['mode'] === undefined ? 'stop' : String(values['mode']).replace('-', '_')
    const call = await operatorClient(ctx)
    if (call === null) return 2
    const dryRun = values['dry-run'] === true
    const answer = await call('POST', '/stops', {
      scope,
      mode,
      reason,
      ...(typeof values['for'] === 'string' ? { for: values['for'] } : {}),
      dry_run: dryRun,
    })
    if (answer.status !== 200 && answer.status !== 201) return printFailure(answer, err)
    if (values['json'] === true) {
      out(JSON.stringify(answer.body))
      return 0
    }
    const affected = (dryRun ? answer.body.would_affect : answer.body.affected) as Record<string, unknown>
    const agents = affected.agents as string[]
    const counts = `${agents.length} agent(s), ${String(affected.approvals_cancelled)} pending approval(s), ${String(affected.leases_revoked)} live lease(s), ${String(affected.in_flight_cut)} request(s) in flight on the answering replica`
    if (dryRun) {
      out(`dry run: stopping ${scopeText(scope)} (${mode}) would affect ${counts}`)
      if (agents.length > 0) out(`agents: ${agents.join(', ')}`)
      return 0
    }
    printStop(answer.body.stop as Record<string, unknown>, out)
    out(`took back: ${counts}`)
    if (answer.body.audited === false) err('warning: the audit trail could not be written; the stop is in force')
    return 0
  },
}

export const resumeCommand: Command = {
  words: ['resume'],
  usage:
    'corridor resume (STOP_ID | --agent ID | --owner TEAM | --connector ID [--action NAME] | --user ID | --global) --reason "…" [--admin URL]\n      (a scope lifts the stops with exactly that scope)',
  options: { ...CONFIG_OPTION, ...ADMIN_OPTION, ...SCOPE_OPTIONS, reason: { type: 'string' } },
  positionals: { min: 0, max: 1 },
  async run(ctx) {
    const { values, positionals, out, err } = ctx
    const reason = reasonOf(values)
    const byId = positionals[0]
    const scope = byId === undefined ? scopeOf(values) : null
    const call = await operatorClient(ctx)
    if (call === null) return 2
    let ids: string[]
    if (byId !== undefined) ids = [byId]
    else {
      const listed = await call('GET', '/stops')
      if (listed.status !== 200) return printFailure(listed, err)
      const want = JSON.stringify(Object.entries(scope ?? {}).sort())
      ids = (listed.body.stops as { id: string; scope: Record<string, string> }[])
        .filter((s) => JSON.stringify(Object.entries(s.scope).sort()) === want)
        .map((s) => s.id)
      if (ids.length === 0) {
        err(`no stop with exactly the scope ${scopeText(scope ?? {})} is in force (see corridor stops)`)
        return 1
      }
    }
    for (const id of ids) {
      const answer = await call('POST', `/stops/${encodeURIComponent(id)}/resume`, { reason })
      if (answer.status !== 200) return printFailure(answer, err)
      out(`${id}: resumed`)
    }
    return 0
  },
}

export const stopsCommand: Command = {
  words: ['stops'],
  usage: 'corridor stops [--admin URL] [--json]   (the stops in force: scope, mode, since, by whom, why)',
  options: { ...CONFIG_OPTION, ...ADMIN_OPTION, json: { type: 'boolean' } },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const { values, out, err } = ctx
    const call = await operatorClient(ctx)
    if (call === null) return 2
    const answer = await call('GET', '/stops')
    if (answer.status !== 200) return printFailure(answer, err)
    const stops = answer.body.stops as Record<string, unknown>[]
    if (values['json'] === true) out(JSON.stringify(answer.body))
    else {
      for (const s of stops) printStop(s, out)
      err(
        `${stops.length} stop(s) in force${answer.body.fresh === false ? ' (WARNING: this replica cannot read the shared stops now)' : ''}`,
      )
    }
    return 0
  },
}
