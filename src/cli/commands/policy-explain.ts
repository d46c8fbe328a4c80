/** `corridor policy explain`: every check and rule a described request goes through, which one decides and why. */
import { loadBundle } from '../../policy/bundle.ts'
import { bucketFor, type CompiledRule } from '../../policy/compile.ts'
import { counterOps, UnreadableAmount, type CounterOp } from '../../policy/limits.ts'
import type { RuleCheck } from '../../policy/match.ts'
import { describedFacts } from '../../policy/described-request.ts'
import { evaluate } from '../../policy/evaluate.ts'
import { loadServerConfig } from '../../config/server-config.ts'
import { CONFIG_OPTION, configPath, UsageError, type Command } from '../command.ts'

export const policyExplainCommand: Command = {
  words: ['policy', 'explain'],
  usage:
    'corridor policy explain --agent ID --method GET --url /<connector>/<path> [--user ID --groups a,b] [--body JSON] [--header name=value]… [--at ISO-time]',
  options: {
    ...CONFIG_OPTION,
    agent: { type: 'string' },
    method: { type: 'string', default: 'GET' },
    url: { type: 'string' },
    user: { type: 'string' },
    groups: { type: 'string' },
    body: { type: 'string' },
    header: { type: 'string', multiple: true },
    at: { type: 'string' },
  },
  positionals: { min: 0, max: 0 },
  async run({ values, out }) {
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)
    const agent = str(values['agent'])
    const url = str(values['url'])
    if (agent === undefined || url === undefined) throw new UsageError('explain needs --agent and --url')
    const bundle = loadBundle(loadServerConfig(configPath(values)).files)
    const headers: Record<string, string> = {}
    for (const h of (values['header'] as string[] | undefined) ?? []) {
      const eq = h.indexOf('=')
      if (eq < 1) throw new UsageError(`--header takes name=value, got '${h}'`)
      headers[h.slice(0, eq)] = h.slice(eq + 1)
    }
    const user = str(values['user'])
    const body = str(values['body'])
    const at = str(values['at'])
    let parsedBody: unknown
    if (body !== undefined) {
      try {
        parsedBody = JSON.parse(body)
      } catch {
        throw new UsageError('--body takes JSON')
      }
    }
    const facts = describedFacts(bundle, {
      agent,
      method: str(values['method']) ?? 'GET',
      url,
      headers,
      ...(user !== undefined
        ? { user: { id: user, groups: str(values['groups'])?.split(',').filter(Boolean) ?? [] } }
        : {}),
      ...(body !== undefined ? { body: parsedBody } : {}),
      ...(at !== undefined ? { at } : {}),
    })
    const lines: string[] = []
    const decision = evaluate(bundle.policy, bundle.version, facts, {
      step: (what, passed) => lines.push(`  ${passed ? '✓' : '✗'} ${what}`),
      rule: (rule: CompiledRule, failed: RuleCheck | null) =>
        lines.push(
          `  ${failed === null ? '●' : '○'} rule ${rule.id} (line ${rule.line}, ${rule.shadow ? 'shadow ' : ''}${rule.effect}): ${failed === null ? 'matches' : `not matched: ${failed.describe}`}`,
        ),
    })
    out(
      `request: ${facts.method} ${facts.path} on connector '${facts.connector.id}' as agent '${facts.agent.id}'${facts.action ? ` → action '${facts.action.name}'` : ''}`,
    )
    for (const l of lines) out(l)
    out(
      `decision: ${decision.effect}${decision.rule ? ` by rule '${decision.rule}'` : ''}${decision.limitingFactor ? ` (limiting factor: ${decision.limitingFactor})` : ''}`,
    )
    out(`reason:   ${decision.reason}`)
    if (decision.shadow.length > 0)
      out(`shadow:   ${decision.shadow.map((s) => `${s.rule} would ${s.effect}`).join(', ')}`)
    // The counters it would touch (their values live in the running Corridor, not in the files).
    const limits = facts.action === null ? [] : bucketFor(bundle.policy, facts.connector.id, facts.action.name).limits
    let ops: CounterOp[] = []
    try {
      ops = counterOps(limits, facts, () => '<digest of this request>')
    } catch (err) {
      if (!(err instanceof UnreadableAmount)) throw err
      out(`limits:   refused: ${err.message}`)
    }
    for (const op of ops)
      out(
        `limit:    ${op.limit.id} (${op.kind}${op.shadow ? ', shadow' : ''}, at most ${op.max} ${op.window.text}${op.limit.onExceed === 'require_approval' ? ', then approval' : ''}) counts ${op.amount} on ${op.key}${decision.effect === 'allow' ? '' : ' (only once allowed)'}`,
      )
    out(`policy:   ${decision.policyVersion}`)
    return 0
  },
}
