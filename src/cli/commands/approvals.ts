/**
 * `corridor approvals list | show | approve | reject`: the approvers' command line, a thin
 * client of the admin API (so it works against any replica). The approver's credential (an
 * approver key or an IdP token) comes from CORRIDOR_APPROVER_TOKEN, never from a flag that
 * would land in shell history. `approve` first fetches the approval and sends back the digest
 * it showed, so what runs is what the approver was shown.
 *
 * The connection to the admin listener (URL, TLS) is cli/admin-client.ts.
 */
import { ADMIN_OPTION, adminClient, printFailure, type AdminCall } from '../admin-client.ts'
import { CONFIG_OPTION, type Command, type Print } from '../command.ts'

export interface ApprovalsCommand {
  readonly verb: string
  readonly id: string | undefined
  readonly reason: string | undefined
  readonly state: string | undefined
  readonly json: boolean
}

export async function runApprovalsCommand(
  c: ApprovalsCommand,
  call: AdminCall,
  out: Print,
  err: Print,
): Promise<number> {
  const fail = (answer: Awaited<ReturnType<AdminCall>>): number => printFailure(answer, err)

  if (c.verb === 'list') {
    const answer = await call('GET', `/approvals?state=${encodeURIComponent(c.state ?? 'pending')}&limit=500`)
    if (answer.status !== 200) return fail(answer)
    const rows = answer.body.approvals as Record<string, unknown>[]
    if (c.json) out(JSON.stringify(rows))
    else {
      for (const a of rows)
        out(
          `${String(a.id)}  ${String(a.state).padEnd(8)} ${String(a.approvals)}  ${String(a.agent)} → ${String(a.connector)}.${String(a.action)}  ${String(a.request)}  expires ${String(a.expires_at)}${a.intent ? `\n    intent: ${String(a.intent)}` : ''}`,
        )
      err(`${rows.length} ${c.state ?? 'pending'} approval(s) you may decide`)
    }
    return 0
  }
  if (c.id === undefined) {
    err(`approvals ${c.verb} needs an approval id`)
    return 2
  }
  const shown = await call('GET', `/approvals/${encodeURIComponent(c.id)}`)
  if (shown.status !== 200) return fail(shown)
  if (c.verb === 'show') {
    if (c.json) out(JSON.stringify(shown.body))
    else printApproval(shown.body, out)
    return 0
  }
  if (c.verb !== 'approve' && c.verb !== 'reject') {
    err(`unknown approvals command '${c.verb}'`)
    return 2
  }
  if (c.reason === undefined || c.reason.trim() === '') {
    err(`approvals ${c.verb} needs --reason "…" (every decision is audited with its reason)`)
    return 2
  }
  const decided = await call('POST', `/approvals/${encodeURIComponent(c.id)}/${c.verb}`, {
    reason: c.reason,
    ...(c.verb === 'approve' ? { digest: shown.body.digest } : {}),
  })
  if (decided.status !== 200) return fail(decided)
  out(`${c.id}: ${String(decided.body.state)} (${String(decided.body.approvals)} approvals)`)
  return 0
}

function printApproval(a: Record<string, unknown>, out: Print): void {
  out(`approval  ${String(a.id)}  [${String(a.state)}, ${String(a.approvals)} approvals]`)
  out(
    `agent     ${String(a.agent)} (owner ${String(a.owner)}, tier ${String(a.tier)})${a.user ? ` acting for ${String(a.user)}` : ''}`,
  )
  out(`action    ${String(a.connector)}.${String(a.action)} (risk ${String(a.risk)})`)
  out(`intent    ${String(a.intent ?? '—')}`)
  out(`why held  rule ${String(a.rule)}: ${String(a.reason)} (policy ${String(a.policy_version)})`)
  out(`expires   ${String(a.expires_at)}`)
  out(`digest    ${String(a.digest)}`)
  out('')
  out(`${String(a.method)} ${String(a.target)}`)
  for (const h of a.headers as string[]) out(h)
  out('')
  out(a.body !== null ? String(a.body) : `(binary body, base64) ${String(a.body_base64)}`)
  for (const d of (Array.isArray(a.decisions) ? a.decisions : []) as { approver: string; at: string; reason: string }[])
    out(`approved by ${d.approver} at ${d.at}: ${d.reason}`)
}

export const approvalsCommand: Command = {
  words: ['approvals'],
  usage:
    'corridor approvals list [--state pending] | show ID | approve ID --reason "…" | reject ID --reason "…"  [--admin URL] [--json]\n      (authenticates with CORRIDOR_APPROVER_TOKEN: an approver key or IdP token)',
  options: {
    ...CONFIG_OPTION,
    reason: { type: 'string' },
    state: { type: 'string' },
    ...ADMIN_OPTION,
    json: { type: 'boolean' },
  },
  positionals: { min: 1, max: 2 },
  async run(ctx) {
    const { values, positionals, out, err, env } = ctx
    const token = env['CORRIDOR_APPROVER_TOKEN']
    if (token === undefined || token === '') {
      err('set CORRIDOR_APPROVER_TOKEN to your approver key (cap_…) or IdP token')
      return 2
    }
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
    return runApprovalsCommand(
      {
        verb: positionals[0] as string,
        id: positionals[1],
        reason: str(values['reason']),
        state: str(values['state']),
        json: values['json'] === true,
      },
      await adminClient(ctx, token),
      out,
      err,
    )
  },
}
