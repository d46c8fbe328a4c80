/**
 * `corridor policy test`: YAML suites a security team keeps next to its policies. Each case
 * describes a request and the decision expected; any mismatch fails the run (exit 1).
 *
 *   tests:
 *     - name: support bot reads a ticket
 *       request: { agent: support-bot, method: GET, url: /ticketing/rest/api/2/issue/OPS-1 }
 *       expect: { effect: allow, rule: tickets-read }
 */
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { loadServerConfig } from '../../config/server-config.ts'
import { ConfigError, YamlReader } from '../../config/yaml-reader.ts'
import { policyTestFileSchema, type PolicyTestFile } from './policy-test-schema.ts'
import { loadBundle, type PolicyBundle } from '../../policy/bundle.ts'
import { evaluate } from '../../policy/evaluate.ts'
import { CorridorError, isCorridorError } from '../../shared/errors.ts'
import { createLogger } from '../../shared/logger.ts'
import { MemoryCounterStore } from '../../controls/counters.ts'
import { Limiter } from '../../controls/limiter.ts'
import { bucketFor } from '../../policy/compile.ts'
import type { Decision } from '../../policy/decision.ts'
import type { RequestFacts } from '../../policy/facts.ts'
import { counterOps, LIMIT_RULE_PREFIX, UnreadableAmount, type CounterOp } from '../../policy/limits.ts'
import { describedFacts, type DescribedRequest } from '../../policy/described-request.ts'
import { CONFIG_OPTION, configPath, DEFAULT_CONFIG, UsageError, type Command } from '../command.ts'

export interface TestCaseResult {
  readonly name: string
  readonly passed: boolean
  readonly problems: readonly string[]
}

export async function runPolicyTests(bundle: PolicyBundle, file: string): Promise<TestCaseResult[]> {
  const r = YamlReader.fromFile(file)
  const suite = r.parse(policyTestFileSchema, 'test suite')
  if (suite === null) throw new ConfigError(r.issues)
  const results: TestCaseResult[] = []
  for (const t of suite.tests) {
    const problems: string[] = []
    try {
      const facts = describedFacts(bundle, describedRequest(t.request))
      let d = evaluate(bundle.policy, bundle.version, facts)
      if (d.effect === 'allow') d = await withLimits(bundle, facts, d, t.counters ?? {})
      if (t.expect.refused !== undefined)
        problems.push(
          `refused: expected ${JSON.stringify(t.expect.refused)}, but the request was decided (${d.effect})`,
        )
      const actual: Record<string, unknown> = { effect: d.effect, rule: d.rule, limiting_factor: d.limitingFactor }
      for (const key of ['effect', 'rule', 'limiting_factor'] as const) {
        if (key in t.expect && t.expect[key] !== actual[key])
          problems.push(`${key}: expected ${JSON.stringify(t.expect[key])}, got ${JSON.stringify(actual[key])}`)
      }
      if (typeof t.expect.reason_contains === 'string' && !d.reason.includes(t.expect.reason_contains)) {
        problems.push(
          `reason: expected it to contain ${JSON.stringify(t.expect.reason_contains)}, got ${JSON.stringify(d.reason)}`,
        )
      }
    } catch (err) {
      // A request Corridor refuses before deciding (ambiguous, malformed) or over a limit can be expected as such.
      if (!(isCorridorError(err) && t.expect.refused === err.code)) problems.push(`error: ${(err as Error).message}`)
    }
    results.push({ name: t.name, passed: problems.length === 0, problems })
  }
  return results
}

/**
 * An allowed request through the limits that count it, with their counters preset as the case
 * says: throws the refusal (rate_limited, budget_exceeded, loop_detected), or returns the hold a
 * limit asks for, or the decision unchanged.
 */
async function withLimits(
  bundle: PolicyBundle,
  facts: RequestFacts,
  decision: Decision,
  counters: Readonly<Record<string, number>>,
): Promise<Decision> {
  if (facts.action === null) return decision
  const limits = bucketFor(bundle.policy, facts.connector.id, facts.action.name).limits
  for (const id of Object.keys(counters))
    if (!bundle.policy.limits.some((l) => l.id === id)) throw new Error(`counters: no limit '${id}' in the policy`)
  let ops: CounterOp[]
  try {
    ops = counterOps(limits, facts, () => 'policy-test')
  } catch (err) {
    if (err instanceof UnreadableAmount) throw new CorridorError('policy_denied', err.message)
    throw err
  }
  if (ops.length === 0) return decision
  const store = new MemoryCounterStore(() => facts.now)
  const preset = ops
    .filter((op) => (counters[op.limit.id] ?? 0) > 0)
    .map((op) => ({ ...op, amount: counters[op.limit.id] as number, max: Number.MAX_VALUE, shadow: false }))
  await store.take(preset, 'preset')
  const admission = await new Limiter(store, createLogger('silent')).admit(ops, 'policy-test')
  if (admission.hold === null) return decision
  return {
    ...decision,
    effect: 'require_approval',
    rule: LIMIT_RULE_PREFIX + admission.hold.limit,
    reason: admission.hold.reason,
    approvers: admission.hold.approvers,
  }
}

/**
 * The suites to run: files named on the command line, the `*.test.yaml` files of directories
 * named, or (none named) the `*.test.yaml` files beside the policy file. Finding none is an
 * error: a test run that tested nothing must not pass.
 */
function suiteFiles(named: readonly string[], policyFile: string): string[] {
  const inDir = (dir: string): string[] =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.test.yaml') || f.endsWith('.test.yml'))
      .sort()
      .map((f) => join(dir, f))
  const files =
    named.length === 0
      ? inDir(dirname(policyFile))
      : named.flatMap((p) => (statSync(resolve(p)).isDirectory() ? inDir(resolve(p)) : [resolve(p)]))
  if (files.length === 0)
    throw new UsageError(
      named.length === 0
        ? `no *.test.yaml beside ${policyFile}; name a suite file`
        : `no *.test.yaml in ${named.join(', ')}`,
    )
  return files
}

export const policyTestCommand: Command = {
  words: ['policy', 'test'],
  usage: `corridor policy test [suite.yaml | dir]… [--config ${DEFAULT_CONFIG}]   (no suite: the *.test.yaml files beside the policy)`,
  options: CONFIG_OPTION,
  positionals: { min: 0, max: Infinity },
  async run({ values, positionals, out }) {
    const paths = loadServerConfig(configPath(values)).files
    const bundle = loadBundle(paths)
    for (const p of positionals) if (!existsSync(resolve(p))) throw new UsageError(`no such suite: ${p}`)
    let failed = 0
    let total = 0
    for (const file of suiteFiles(positionals, paths.policy)) {
      for (const result of await runPolicyTests(bundle, file)) {
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
  },
}

function describedRequest(t: PolicyTestFile['tests'][number]['request']): DescribedRequest {
  const request: DescribedRequest = { agent: t.agent, method: t.method ?? 'GET', url: t.url }
  if (t.host !== undefined) request.host = t.host
  if (t.at !== undefined) request.at = t.at
  if (t.user !== undefined) request.user = { id: t.user.id, groups: t.user.groups ?? [] }
  if (t.headers !== undefined) request.headers = t.headers
  if ('body' in t) request.body = t.body
  return request
}
