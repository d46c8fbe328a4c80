/**
 * The Node flags Corridor ships with (young generation size, no allocation-site pretenuring) are
 * the same however it is started, and the Node that runs it accepts them: a flag a later Node
 * dropped would otherwise stop the container at its first start.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { nodeFlagsOf, scriptsOf, shippedNodeFlags } from '../../testkit/shipped-flags.ts'

const root = join(import.meta.dirname, '../..')
const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1]

describe('shipped Node flags', () => {
  const shipped = shippedNodeFlags(root)

  it('are the same in npm start, npm run corridor and the container', () => {
    expect(shipped).toContain('--no-allocation-site-pretenuring')
    expect(nodeFlagsOf((scriptsOf(root).corridor ?? '').split(' '))).toEqual(shipped)
    expect(entrypoint).toBeDefined()
    expect(nodeFlagsOf(JSON.parse(entrypoint as string) as string[])).toEqual(shipped)
  })

  it('are accepted by the Node that runs Corridor', () => {
    const run = spawnSync(process.execPath, [...shipped, '-e', '0'], { encoding: 'utf8' })
    expect(run.stderr).toBe('')
    expect(run.status).toBe(0)
    const bad = spawnSync(process.execPath, ['--no-such-v8-flag-at-all', '-e', '0'], { encoding: 'utf8' })
    expect(bad.status).not.toBe(0)
  })
})
