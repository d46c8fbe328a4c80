/** The static configuration is read once and frozen: nothing can change it while Corridor runs. */
import { describe, expect, it } from 'vitest'
import { loadServerConfig } from '../../src/config/server-config.ts'

describe('corridor.yaml', () => {
  it('loads frozen, all the way down', () => {
    const config = loadServerConfig('policies/corridor.yaml')
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.limits)).toBe(true)
    expect(Object.isFrozen(config.approvals)).toBe(true)
    expect(() => {
      ;(config.limits as { maxHeaders: number }).maxHeaders = 1_000_000
    }).toThrow(TypeError)
    expect(config.limits.maxHeaders).toBe(100)
  })
})
