import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { Secret } from '../../src/credentials/secret.ts'
import { capturedLog } from '../helpers/captured-log.ts'
import { newCanary } from '../helpers/standard-policy.ts'

function capture() {
  const { log, lines } = capturedLog('debug')
  return { log, text: () => lines.join('') }
}

describe('the operational log cannot carry a secret', () => {
  it('serialises errors to message, name and code only (axios-style errors carry the Vault token in config)', () => {
    const canary = newCanary()
    const { log, text } = capture()
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8200'), {
      code: 'ECONNREFUSED',
      config: { headers: { 'X-Vault-Token': canary } },
    })
    log.error({ err }, 'vault call failed')
    // The line was written, with what an operator needs, and without the token.
    const line = JSON.parse(text().trim()) as { msg: string; err: Record<string, unknown> }
    expect(line.msg).toBe('vault call failed')
    expect(line.err).toMatchObject({ message: 'connect ECONNREFUSED 127.0.0.1:8200', code: 'ECONNREFUSED' })
    expect(text()).not.toContain(canary)
  })

  it('renders a Secret as [REDACTED] in logs, JSON, strings and inspection', () => {
    const canary = newCanary()
    const secret = new Secret(canary)
    const { log, text } = capture()
    log.info({ credential: secret, nested: { secret } }, `using ${String(secret)}`)
    expect(JSON.parse(text().trim())).toMatchObject({
      msg: 'using [REDACTED]',
      credential: '[REDACTED]',
      nested: { secret: '[REDACTED]' },
    })
    expect(text()).not.toContain(canary)
    expect(JSON.stringify({ secret })).not.toContain(canary)
    expect(`${secret as unknown as string}`).toBe('[REDACTED]')
    expect(inspect(secret)).toBe('Secret([REDACTED])')
    expect(secret.reveal()).toBe(canary)
  })
})
