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
import type { Node } from 'yaml'
import { YamlReader } from '../../config/yaml-reader.ts'
import { loadBundle, type PolicyBundle } from '../../policy/bundle.ts'
import { evaluate } from '../../policy/evaluate.ts'
import { isCorridorError } from '../../shared/errors.ts'
import { describedFacts, type DescribedRequest } from '../../policy/described-request.ts'
import { CONFIG_OPTION, configPath, DEFAULT_CONFIG, UsageError, type Command } from '../command.ts'

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
    const expect = r.map(f.get('expect'), `tests[${i}].expect`, [
      'effect',
      'rule',
      'limiting_factor',
      'reason_contains',
      'refused',
    ])
    if (expect.has('effect') === expect.has('refused'))
      r.issue(
        f.get('expect'),
        `tests[${i}].expect needs either effect or refused (an error code such as ambiguous_request)`,
      )
    return {
      name: r.string(f.get('name'), `tests[${i}].name`),
      request: readRequest(r, f.get('request'), `tests[${i}].request`),
      expect: Object.fromEntries([...expect].map(([k, v]) => [k, r.value(v)])) as Record<string, unknown>,
    }
  })
  r.assertValid()
  return cases.map((c) => {
    const problems: string[] = []
    try {
      const d = evaluate(bundle.policy, bundle.version, describedFacts(bundle, c.request))
      if ('refused' in c.expect)
        problems.push(
          `refused: expected ${JSON.stringify(c.expect.refused)}, but the request was decided (${d.effect})`,
        )
      const actual: Record<string, unknown> = { effect: d.effect, rule: d.rule, limiting_factor: d.limitingFactor }
      for (const key of ['effect', 'rule', 'limiting_factor'] as const) {
        if (key in c.expect && c.expect[key] !== actual[key])
          problems.push(`${key}: expected ${JSON.stringify(c.expect[key])}, got ${JSON.stringify(actual[key])}`)
      }
      if (typeof c.expect.reason_contains === 'string' && !d.reason.includes(c.expect.reason_contains)) {
        problems.push(
          `reason: expected it to contain ${JSON.stringify(c.expect.reason_contains)}, got ${JSON.stringify(d.reason)}`,
        )
      }
    } catch (err) {
      // A request Corridor refuses before deciding (ambiguous, malformed) can be expected as such.
      if (!(isCorridorError(err) && c.expect.refused === err.code)) problems.push(`error: ${(err as Error).message}`)
    }
    return { name: c.name, passed: problems.length === 0, problems }
  })
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
      for (const result of runPolicyTests(bundle, file)) {
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

/** A test case's request, checked field by field (a typo must fail with its position, not run as something else). */
function readRequest(r: YamlReader, node: Node | undefined, where: string): DescribedRequest {
  const f = r.map(node, where, ['agent', 'method', 'url', 'host', 'user', 'headers', 'body', 'at'], ['agent', 'url'])
  const request: DescribedRequest = {
    agent: r.string(f.get('agent'), `${where}.agent`),
    method: f.has('method') ? r.string(f.get('method'), `${where}.method`) : 'GET',
    url: r.string(f.get('url'), `${where}.url`),
  }
  if (f.has('host')) request.host = r.string(f.get('host'), `${where}.host`)
  if (f.has('at')) request.at = r.string(f.get('at'), `${where}.at`)
  if (f.has('user')) {
    const u = r.map(f.get('user'), `${where}.user`, ['id', 'groups'], ['id'])
    request.user = {
      id: r.string(u.get('id'), `${where}.user.id`),
      groups: u.has('groups') ? r.strings(u.get('groups'), `${where}.user.groups`) : [],
    }
  }
  if (f.has('headers')) {
    const headers: Record<string, string> = {}
    for (const [name, value] of r.entries(f.get('headers'), `${where}.headers`))
      headers[name] = r.string(value, `${where}.headers.${name}`)
    request.headers = headers
  }
  if (f.has('body')) request.body = r.value(f.get('body'))
  return request
}
