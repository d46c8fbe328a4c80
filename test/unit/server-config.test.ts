/** The static configuration is read once and frozen: nothing can change it while Corridor runs. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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

/** A corridor.yaml with these keys in its audit mapping (and more YAML after it). */
const write = (audit: string, vault = ''): string => {
  const dir = mkdtempSync(join(tmpdir(), 'corridor-config-'))
  writeFileSync(
    join(dir, 'corridor.yaml'),
    `files: { agents: a.yaml, connectors: c.yaml, policy: p.yaml }\naudit: { file: audit.log, ${audit} }\n${vault}`,
  )
  return join(dir, 'corridor.yaml')
}

describe('audit retention', () => {
  it('refuses to delete the only copy of the trail sooner than the floor, 180 days unless lowered', () => {
    expect(() => loadServerConfig(write('retain: 179d'))).toThrow(/only copy of the audit trail .* \(180d\)/)
    expect(loadServerConfig(write('retain: 180d')).auditRotation?.retainMs).toBe(180 * 86_400_000)
    expect(() => loadServerConfig(write('retain: 7d, retain_floor: 30d'))).toThrow(/retain_floor \(30d\)/)
    expect(loadServerConfig(write('retain: 7d, retain_floor: 7d')).auditRotation?.retainMs).toBe(7 * 86_400_000)
  })

  it('lets a shipped trail go sooner: retention deletes only what a store or collector holds', () => {
    expect(
      loadServerConfig(write('retain: 1d, postgres: { url: "postgres://127.0.0.1/y" }')).auditRotation?.retainMs,
    ).toBe(86_400_000)
    expect(
      loadServerConfig(write('retain: 1d, otlp: { endpoint: "http://127.0.0.1:4318" }')).auditRotation?.retainMs,
    ).toBe(86_400_000)
  })
})

describe('audit checkpoint signing', () => {
  const vault = 'vault:\n  address: http://127.0.0.1:8200\n  auth: { method: token, token_env: VAULT_TOKEN }\n'

  it('reads a transit key, on the default mount unless given', () => {
    expect(loadServerConfig(write('signing_transit: { key: audit }', vault)).auditSigningTransit).toEqual({
      mount: 'transit',
      key: 'audit',
    })
    expect(loadServerConfig(write('signing_transit: { mount: sign, key: audit }', vault)).auditSigningTransit).toEqual({
      mount: 'sign',
      key: 'audit',
    })
  })

  it('refuses a transit key without vault:, and a key file and a transit key together', () => {
    expect(() => loadServerConfig(write('signing_transit: { key: audit }'))).toThrow(/configure vault:/)
    expect(() => loadServerConfig(write('signing_transit: { key: audit }, signing_key_file: k.pem', vault))).toThrow(
      /not both/,
    )
  })
})

describe('traces recorded whatever their sampling', () => {
  const traces = (extra: string): string =>
    write('', `telemetry: { traces: { endpoint: "http://127.0.0.1:4318"${extra} } }\n`)

  it('records by sampling alone unless told otherwise', () => {
    expect(loadServerConfig(traces('')).traces?.alwaysRecord).toEqual({
      outcomes: [],
      errors: false,
      slowerThanMs: null,
    })
    expect(
      loadServerConfig(traces(', always_record: { outcomes: [denied, held], errors: true, slower_than: 2s }')).traces
        ?.alwaysRecord,
    ).toEqual({ outcomes: ['denied', 'held'], errors: true, slowerThanMs: 2_000 })
    expect(loadServerConfig(traces(', always_record: { outcomes: denied }')).traces?.alwaysRecord.outcomes).toEqual([
      'denied',
    ])
  })

  it('refuses an outcome no request ends in, naming the ones there are', () => {
    expect(() => loadServerConfig(traces(', always_record: { outcomes: [incomplete] }'))).toThrow(
      /telemetry\.traces\.always_record\.outcomes.*must be one or a list of: forwarded, denied, held/,
    )
    expect(() => loadServerConfig(traces(', always_record: { slowest: 2s }'))).toThrow(/slowest/)
  })
})
