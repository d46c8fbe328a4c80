/**
 * The `corridor` command line.
 *
 *   corridor serve            [--config policies/corridor.yaml] [--workers N|auto]
 *   corridor policy check     [--config …]
 *   corridor policy test      <suite.yaml>… [--config …]
 *   corridor policy explain   --agent ID --method GET --url /github/repos/acme/app/issues [--user ID --groups a,b] [--body JSON] [--header k=v] [--at ISO]
 *   corridor keys mint        --agent ID | --approver ID
 *   corridor approvals        list [--state pending|approved|executing] | show ID | approve ID --reason … | reject ID --reason …
 *   corridor audit query      [--config …] [--agent …] [--connector …] [--action …] [--decision …] [--outcome …] [--since ISO] [--until ISO] [--request-id …] [--approval …] [--limit N]
 */
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { queryAudit, type AuditFilter } from '../audit/query.ts'
import { loadServerConfig, MAX_WORKERS, workerCount } from '../config/server-config.ts'
import { ConfigError, formatIssue } from '../config/yaml-reader.ts'
import { loadBundle } from '../policy/bundle.ts'
import type { RuleCheck, CompiledRule } from '../policy/compile.ts'
import { evaluate } from '../policy/evaluate.ts'
import { API_KEY_PREFIX, APPROVER_KEY_PREFIX, mintApiKey } from '../registry/agents.ts'
import { createLogger } from '../shared/logger.ts'
import { describedFacts } from '../policy/described-request.ts'
import { runPolicyTests } from './policy-test.ts'
import { serve } from './serve.ts'

const DEFAULT_CONFIG = 'policies/corridor.yaml'

const USAGE = `usage:
  corridor serve [--config ${DEFAULT_CONFIG}] [--workers N|auto]
  corridor policy check [--config …]
  corridor policy test <suite.yaml>… [--config …]
  corridor policy explain --agent ID --method GET --url /<connector>/<path> [--user ID --groups a,b] [--body JSON] [--header name=value]… [--at ISO-time]
  corridor keys mint (--agent ID | --approver ID)
  corridor approvals list [--state pending] | show ID | approve ID --reason "…" | reject ID --reason "…"  [--admin URL] [--json]
      (authenticates with CORRIDOR_APPROVER_TOKEN: an approver key or IdP token)
  corridor audit query [--agent ID] [--connector ID] [--action NAME] [--decision allow|deny|require_approval] [--outcome O] [--since ISO] [--until ISO] [--request-id ID] [--approval ID] [--limit N]`

const out = (line: string): void => void process.stdout.write(line + '\n')
const err = (line: string): void => void process.stderr.write(line + '\n')

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', default: DEFAULT_CONFIG },
      agent: { type: 'string' },
      method: { type: 'string', default: 'GET' },
      url: { type: 'string' },
      user: { type: 'string' },
      groups: { type: 'string' },
      body: { type: 'string' },
      header: { type: 'string', multiple: true },
      at: { type: 'string' },
      connector: { type: 'string' },
      action: { type: 'string' },
      decision: { type: 'string' },
      outcome: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      'request-id': { type: 'string' },
      approval: { type: 'string' },
      limit: { type: 'string' },
      approver: { type: 'string' },
      reason: { type: 'string' },
      state: { type: 'string' },
      admin: { type: 'string' },
      json: { type: 'boolean' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [command, sub, ...rest] = positionals
  if (values.help || command === undefined) {
    out(USAGE)
    return command === undefined && !values.help ? 2 : 0
  }
  const configPath = resolve(values.config)

  try {
    if (command === 'serve') {
      const config = loadServerConfig(configPath)
      const workers = values.workers === undefined ? config.workers : parseWorkers(values.workers)
      return await serve({ ...config, workers }, process.env, createLogger(process.env.CORRIDOR_LOG_LEVEL ?? 'info'))
    }
    if (command === 'policy' && sub === 'check') {
      const bundle = loadBundle(loadServerConfig(configPath).files)
      out(`policy ok: ${bundle.version} (${bundle.policy.rules.length} rules, ${bundle.catalog.connectors.size} connectors, ${bundle.registry.agents.size} agents)`)
      return 0
    }
    if (command === 'policy' && sub === 'test') {
      if (rest.length === 0) throw new UsageError('name at least one test suite file')
      const bundle = loadBundle(loadServerConfig(configPath).files)
      let failed = 0
      let total = 0
      for (const file of rest) {
        for (const result of runPolicyTests(bundle, resolve(file))) {
          total++
          if (result.passed) out(`  ok    ${result.name}`)
          else {
            failed++
            out(`  FAIL  ${result.name}`)
            for (const p of result.problems) out(`          ${p}`)
          }
        }
      }
      out(`${total - failed} passed, ${failed} failed`)
      return failed === 0 ? 0 : 1
    }
    if (command === 'policy' && sub === 'explain') {
      if (values.agent === undefined || values.url === undefined) throw new UsageError('explain needs --agent and --url')
      const bundle = loadBundle(loadServerConfig(configPath).files)
      const headers: Record<string, string> = {}
      for (const h of values.header ?? []) {
        const eq = h.indexOf('=')
        if (eq < 1) throw new UsageError(`--header takes name=value, got '${h}'`)
        headers[h.slice(0, eq)] = h.slice(eq + 1)
      }
      const facts = describedFacts(bundle, {
        agent: values.agent,
        method: values.method,
        url: values.url,
        headers,
        ...(values.user !== undefined ? { user: { id: values.user, groups: values.groups?.split(',').filter(Boolean) ?? [] } } : {}),
        ...(values.body !== undefined ? { body: JSON.parse(values.body) } : {}),
        ...(values.at !== undefined ? { at: values.at } : {}),
      })
      const lines: string[] = []
      const decision = evaluate(bundle.policy, bundle.version, facts, {
        step: (what, passed) => lines.push(`  ${passed ? '✓' : '✗'} ${what}`),
        rule: (rule: CompiledRule, failed: RuleCheck | null) =>
          lines.push(`  ${failed === null ? '●' : '○'} rule ${rule.id} (line ${rule.line}, ${rule.shadow ? 'shadow ' : ''}${rule.effect}): ${failed === null ? 'matches' : `not matched: ${failed.describe}`}`),
      })
      out(`request: ${facts.method} ${facts.path} on connector '${facts.connector.id}' as agent '${facts.agent.id}'${facts.action ? ` → action '${facts.action.name}'` : ''}`)
      for (const l of lines) out(l)
      out(`decision: ${decision.effect}${decision.rule ? ` by rule '${decision.rule}'` : ''}${decision.limitingFactor ? ` (limiting factor: ${decision.limitingFactor})` : ''}`)
      out(`reason:   ${decision.reason}`)
      if (decision.shadow.length > 0) out(`shadow:   ${decision.shadow.map((s) => `${s.rule} would ${s.effect}`).join(', ')}`)
      out(`policy:   ${decision.policyVersion}`)
      return 0
    }
    if (command === 'keys' && sub === 'mint') {
      if ((values.agent === undefined) === (values.approver === undefined)) throw new UsageError('mint needs --agent ID or --approver ID')
      const forApprover = values.approver !== undefined
      const { key, hash } = mintApiKey(forApprover ? APPROVER_KEY_PREFIX : API_KEY_PREFIX)
      err(forApprover ? `approver key for '${values.approver}' (shown once; the approver sets it as CORRIDOR_APPROVER_TOKEN):` : `API key for agent '${values.agent}' (shown once; give it to the agent as its API key):`)
      out(key)
      err(forApprover ? `add this under the approver's keys in agents.yaml (approvers:):` : `add this under the agent's api_keys in agents.yaml:`)
      out(`      - { hash: "${hash}", label: "minted ${new Date().toISOString().slice(0, 10)}" }`)
      return 0
    }
    if (command === 'approvals') {
      if (sub === undefined) throw new UsageError('approvals needs list, show, approve or reject')
      let adminUrl = values.admin
      if (adminUrl === undefined) {
        const admin = loadServerConfig(configPath).admin
        adminUrl = `http://${admin.host === '0.0.0.0' ? '127.0.0.1' : admin.host}:${admin.port}`
      }
      const { runApprovalsCommand } = await import('./approvals.ts')
      return await runApprovalsCommand({ verb: sub, id: rest[0], reason: values.reason, state: values.state, adminUrl, token: process.env.CORRIDOR_APPROVER_TOKEN, json: values.json ?? false }, out, err)
    }
    if (command === 'audit' && sub === 'query') {
      const config = loadServerConfig(configPath)
      const filter: AuditFilter = {
        agent: values.agent,
        connector: values.connector,
        action: values.action,
        decision: values.decision,
        outcome: values.outcome,
        requestId: values['request-id'],
        approval: values.approval,
        since: values.since === undefined ? undefined : parseTime(values.since, '--since'),
        until: values.until === undefined ? undefined : parseTime(values.until, '--until'),
        limit: values.limit === undefined ? undefined : Number(values.limit),
      }
      const { matched, unreadable } = await queryAudit(config.auditFile, filter, (record) => out(JSON.stringify(record)))
      err(`${matched} record(s)${unreadable > 0 ? `; ${unreadable} unreadable line(s) skipped` : ''}`)
      return 0
    }
    throw new UsageError(`unknown command '${[command, sub].filter(Boolean).join(' ')}'`)
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const issue of e.issues) err(formatIssue(issue))
      return 1
    }
    if (e instanceof UsageError) {
      err(e.message)
      err(USAGE)
      return 2
    }
    err(`error: ${(e as Error).message}`)
    return 1
  }
}

class UsageError extends Error {}

function parseWorkers(text: string): number {
  const n = workerCount(text)
  if (n === null) throw new UsageError(`--workers takes 'auto' or a whole number from 1 to ${MAX_WORKERS}, got '${text}'`)
  return n
}

function parseTime(text: string, flag: string): number {
  const t = Date.parse(text)
  if (Number.isNaN(t)) throw new UsageError(`${flag} takes an ISO time, got '${text}'`)
  return t
}
