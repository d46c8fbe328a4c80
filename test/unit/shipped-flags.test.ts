/**
 * The Node flags Corridor ships with (young generation size, no allocation-site pretenuring) are
 * the same however it is started, and the Node that runs it accepts them: a flag a later Node
 * dropped would otherwise stop the container at its first start.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = join(import.meta.dirname, '../..')
const flagsOf = (command: readonly string[]): string[] => command.filter((arg) => arg.startsWith('--'))

const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
  .scripts
const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1]

describe('shipped Node flags', () => {
  it('are the same in npm start, npm run corridor and the container', () => {
    const start = flagsOf((scripts.start ?? '').split(' '))
    expect(start).toContain('--no-allocation-site-pretenuring')
    expect(flagsOf((scripts.corridor ?? '').split(' '))).toEqual(start)
    expect(entrypoint).toBeDefined()
    expect(flagsOf(JSON.parse(entrypoint as string) as string[])).toEqual(start)
  })

  it('are accepted by the Node that runs Corridor', () => {
    const start = flagsOf((scripts.start ?? '').split(' '))
    const run = spawnSync(process.execPath, [...start, '-e', '0'], { encoding: 'utf8' })
    expect(run.stderr).toBe('')
    expect(run.status).toBe(0)
    const bad = spawnSync(process.execPath, ['--no-such-v8-flag-at-all', '-e', '0'], { encoding: 'utf8' })
    expect(bad.status).not.toBe(0)
  })
})
