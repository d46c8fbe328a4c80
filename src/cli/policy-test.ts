/**
 * `corridor policy test`: YAML suites a security team keeps next to its policies. Each case
 * describes a request and the decision expected; any mismatch fails the run (exit 1).
 *
 *   tests:
 *     - name: support bot reads a ticket
 *       request: { agent: support-bot, method: GET, url: /ticketing/rest/api/2/issue/OPS-1 }
 *       expect: { effect: allow, rule: tickets-read }
 */
import { YamlReader } from '../config/yaml-reader.ts'
import type { PolicyBundle } from '../policy/bundle.ts'
import { evaluate } from '../policy/evaluate.ts'
import { isCorridorError } from '../shared/errors.ts'
import { describedFacts, type DescribedRequest } from '../policy/described-request.ts'

export interface TestCaseResult {
  readonly name: string
  readonly passed: boolean
  readonly problems: readonly string[]
}

export function runPolicyTests(bundle: PolicyBundle, file: string): TestCaseResult[] {
  const r = YamlReader.fromFile(file)
  const top = r.map(r.root, 'test suite', ['tests'], ['tests'])
  const cases = r.list(top.get('tests'), 'tests').map((node, i) => {
    const f = r.map(node, `tests[${i}]`, ['name', 'request', 'expect'], ['name', 'request', 'expect'])
    const expect = r.map(f.get('expect'), `tests[${i}].expect`, ['effect', 'rule', 'limiting_factor', 'reason_contains', 'refused'])
    if (expect.has('effect') === expect.has('refused')) r.issue(f.get('expect'), `tests[${i}].expect needs either effect or refused (an error code such as ambiguous_request)`)
    return {
      name: r.string(f.get('name'), `tests[${i}].name`),
      request: r.value(f.get('request')) as DescribedRequest,
      expect: Object.fromEntries([...expect].map(([k, v]) => [k, r.value(v)])) as Record<string, unknown>,
    }
  })
  r.assertValid()
  return cases.map((c) => {
    const problems: string[] = []
    try {
      const d = evaluate(bundle.policy, bundle.version, describedFacts(bundle, c.request))
      if ('refused' in c.expect) problems.push(`refused: expected ${JSON.stringify(c.expect.refused)}, but the request was decided (${d.effect})`)
      const actual: Record<string, unknown> = { effect: d.effect, rule: d.rule, limiting_factor: d.limitingFactor }
      for (const key of ['effect', 'rule', 'limiting_factor'] as const) {
        if (key in c.expect && c.expect[key] !== actual[key]) problems.push(`${key}: expected ${JSON.stringify(c.expect[key])}, got ${JSON.stringify(actual[key])}`)
      }
      if (typeof c.expect.reason_contains === 'string' && !d.reason.includes(c.expect.reason_contains)) {
        problems.push(`reason: expected it to contain ${JSON.stringify(c.expect.reason_contains)}, got ${JSON.stringify(d.reason)}`)
      }
    } catch (err) {
      // A request Corridor refuses before deciding (ambiguous, malformed) can be expected as such.
      if (!(isCorridorError(err) && c.expect.refused === err.code)) problems.push(`error: ${(err as Error).message}`)
    }
    return { name: c.name, passed: problems.length === 0, problems }
  })
}
