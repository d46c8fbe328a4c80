/**
 * A request's route (a span's `http.route`): the declared action's path template as the agent
 * addressed it, with the connector's prefix when routed by path and without it when routed by
 * host, so that every issue of every repository reads as one route. Read from the shipped policy.
 */
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { loadBundle } from '../../src/policy/bundle.ts'
import { routeTarget, routeTemplate } from '../../src/request/canonical-request.ts'
import { parseRequestTarget } from '../../src/request/target.ts'

const dir = join(import.meta.dirname, '../../policies')
const { catalog } = loadBundle({
  agents: join(dir, 'agents.yaml'),
  connectors: join(dir, 'connectors.yaml'),
  policy: join(dir, 'policy.yaml'),
})
const routeOf = (host: string, method: string, target: string) =>
  routeTemplate(routeTarget(catalog, host, method, parseRequestTarget(target)))

it("is the action's template, prefixed by the connector when the path names it, and null outside every action", () => {
  expect(routeOf('corridor.internal', 'GET', '/github/repos/acme/site/issues/42?state=open')).toBe(
    '/github/repos/{owner}/{repo}/issues/{number}',
  )
  expect(routeOf('github.corridor.internal', 'GET', '/repos/acme/site/issues/42')).toBe(
    '/repos/{owner}/{repo}/issues/{number}',
  )
  expect(routeOf('corridor.internal', 'GET', '/github/repos/acme/site/contents/a/b/c.md')).toBe(
    '/github/repos/{owner}/{repo}/contents/{path+}',
  )
  // No declared action: no route, rather than the path itself (which would be a series per value).
  expect(routeOf('corridor.internal', 'GET', '/github/undeclared/thing')).toBeNull()
})
