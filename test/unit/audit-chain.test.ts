/**
 * The audit trail is a hash chain: written by the real file sink, then mutated at random, one
 * entry at a time (deleted, duplicated, swapped with the next, edited, edited with its hash
 * recomputed, or the file cut short). The verifier must find every mutation and name the first
 * broken entry; an untouched chain verifies clean; checkpoints verify only with the right key.
 */
import { spawnSync } from 'node:child_process'
import { generateKeyPairSync, sign } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CHECKPOINT_LINE_PREFIX, sealedLine, verifyLines } from '../../src/audit/chain.ts'
import { newAuditRecord, type RetentionAuditEvent } from '../../src/audit/record.ts'
import { trailFiles } from '../../src/audit/rotation.ts'
import { FileAuditSink } from '../../src/audit/sink.ts'
import { createLogger } from '../../src/shared/logger.ts'
import { capturedLog } from '../helpers/captured-log.ts'

const keys = generateKeyPairSync('ed25519')
const otherKeys = generateKeyPairSync('ed25519')

/** A closed trail of `n` request records (plus the sink's opening line and final checkpoint). */
function writeTrail(n: number, checkpointEntries: number | null = null): { file: string; lines: string[] } {
  const file = join(mkdtempSync(join(tmpdir(), 'corridor-chain-')), 'audit.log')
  const sink = new FileAuditSink(file, createLogger('silent'), { signingKey: keys.privateKey, checkpointEntries })
  for (let i = 0; i < n; i++) {
    const record = newAuditRecord(`req-${i}`, Date.now(), 'POST', `/svc/items/${i}`)
    record.agent = 'billing-bot'
    record.outcome = 'forwarded'
    sink.write(record)
  }
  sink.closeNow()
  return {
    file,
    lines: readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== ''),
  }
}

describe('the audit hash chain', () => {
  it('a closed trail of 100,000 entries verifies clean, its final checkpoint signed', () => {
    const { lines } = writeTrail(100_000)
    const report = verifyLines(lines, keys.publicKey)
    expect(report).toMatchObject({
      entries: 100_002,
      streams: 1,
      checkpoints: 1,
      unreadable: 0,
      breaks: [],
      unclosed: [],
    })
    // Someone else's key does not vouch for it.
    expect(verifyLines(lines, otherKeys.publicKey).breaks).toEqual([
      expect.objectContaining({ seq: 100_002, why: 'the checkpoint signature does not verify' }),
    ])
  })

  it('finds every single-entry mutation and names the first broken entry (300 random mutations of a 5,000-entry trail)', () => {
    const { lines } = writeTrail(5_000)
    const mutation = fc.record({
      kind: fc.constantFrom('delete', 'duplicate', 'swap', 'edit', 'edit-and-rehash', 'truncate'),
      at: fc.integer({ min: 0, max: lines.length - 2 }),
    })
    let found = 0
    fc.assert(
      fc.property(mutation, ({ kind, at }) => {
        const copy = [...lines]
        const seq = at + 1 // line i holds entry i + 1
        let expected: number | 'unclosed'
        switch (kind) {
          case 'delete':
            copy.splice(at, 1)
            expected = seq
            break
          case 'duplicate':
            copy.splice(at + 1, 0, copy[at] as string)
            expected = seq + 1
            break
          case 'swap':
            ;[copy[at], copy[at + 1]] = [copy[at + 1] as string, copy[at] as string]
            expected = seq
            break
          case 'edit':
            copy[at] = (copy[at] as string).replace(/"time":"[^"]*"/, '"time":"1999-01-01T00:00:00.000Z"')
            expected = seq
            break
          case 'edit-and-rehash': {
            // A forger who recomputes the edited entry's own hash still breaks the link from the next one.
            const line = (copy[at] as string).replace(/"time":"[^"]*"/, '"time":"1999-01-01T00:00:00.000Z"')
            copy[at] = sealedLine(line.replace(/,"hash":"[0-9a-f]{64}"\}$/, '}'))
            expected = seq + 1
            break
          }
          case 'truncate':
            copy.splice(at + 1)
            expected = 'unclosed'
            break
        }
        const report = verifyLines(copy, keys.publicKey)
        if (expected === 'unclosed') {
          expect(report.breaks).toEqual([])
          expect(report.unclosed).toEqual([expect.objectContaining({ lastSeq: seq })])
        } else expect(report.breaks.map((b) => b.seq)).toEqual([expected])
        found++
      }),
      { numRuns: 300, seed: 20261130 },
    )
    expect(found).toBe(300)
  })

  it('corridor audit verify: exit 0 on an intact trail, 1 naming the entry on a broken one', () => {
    const { file, lines } = writeTrail(50)
    // The public key as `corridor audit public-key` publishes it from the signing key corridor.yaml names.
    const dir = join(file, '..')
    writeFileSync(join(dir, 'checkpoints.key.pem'), keys.privateKey.export({ type: 'pkcs8', format: 'pem' }))
    writeFileSync(
      join(dir, 'corridor.yaml'),
      'listen: { host: 127.0.0.1, port: 0 }\nfiles: { agents: agents.yaml, connectors: connectors.yaml, policy: policy.yaml }\n' +
        'audit: { file: audit.log, signing_key_file: checkpoints.key.pem }\n',
    )
    const published = spawnSync(
      process.execPath,
      ['bin/corridor.js', 'audit', 'public-key', '--config', join(dir, 'corridor.yaml')],
      { encoding: 'utf8', timeout: 15_000 },
    )
    expect(published.status).toBe(0)
    expect(published.stdout).toBe(keys.publicKey.export({ type: 'spki', format: 'pem' }).toString())
    const publicKeyFile = join(dir, 'checkpoints.pub.pem')
    writeFileSync(publicKeyFile, published.stdout)
    const verify = (path: string) =>
      spawnSync(process.execPath, ['bin/corridor.js', 'audit', 'verify', path, '--public-key', publicKeyFile], {
        encoding: 'utf8',
        timeout: 15_000,
      })
    const intact = verify(file)
    expect(intact.status).toBe(0)
    expect(intact.stdout).toContain('52 entries in 1 stream(s), 1 checkpoint(s), signatures checked')
    expect(intact.stdout).toContain('chain intact')
    const tampered = join(file, '..', 'tampered.log')
    writeFileSync(tampered, lines.filter((_l, i) => i !== 20).join('\n') + '\n')
    const broken = verify(tampered)
    expect(broken.status).toBe(1)
    expect(broken.stderr).toMatch(/BROKEN stream [\w-]+ at entry 21 \(line 21\): entries 21 to 21 are missing/)
  })
})

describe('retention records', () => {
  it('a trail that starts later is accounted for by a record of the deletion, and no longer once the file was kept', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'corridor-chain-')), 'audit.log')
    let rotations = 0
    const sink = new FileAuditSink(file, createLogger('silent'), {
      signingKey: keys.privateKey,
      rotation: { maxBytes: 4_000, maxAgeMs: null, retainMs: 0 },
      onRotate: () => rotations++,
    })
    // Until the third rotation: retention (keeping nothing) has deleted the files before the live one.
    for (let i = 0; rotations < 3; i++) {
      const record = newAuditRecord(`req-${i}`, Date.now(), 'POST', `/svc/items/${i}`)
      record.outcome = 'forwarded'
      sink.write(record)
    }
    const read = (): string[] =>
      trailFiles(file).flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .filter((l) => l !== ''),
      )
    const records = read()
      .filter((l) => l.startsWith('{"type":"retention"'))
      .map((l) => JSON.parse(l) as RetentionAuditEvent)
    expect(records.length).toBeGreaterThan(0)
    expect(verifyLines(read(), keys.publicKey).startedLater).toMatchObject([{ fileStart: true, recorded: true }])
    // The same files named as kept after all: nothing now says where the trail's start went.
    sink.writeEvent({
      ...(records.at(-1) as RetentionAuditEvent),
      deleted: [],
      kept: records.flatMap((r) => r.deleted),
    })
    sink.closeNow()
    const report = verifyLines(read(), keys.publicKey)
    expect(report.breaks).toEqual([])
    expect(report.startedLater).toMatchObject([{ fileStart: true, recorded: false }])
  })
})

describe('retention records, when the record itself fills the new file', () => {
  it('names each deleted file once, deletes it, and the trail still verifies', () => {
    const dir = mkdtempSync(join(tmpdir(), 'corridor-chain-'))
    const file = join(dir, 'audit.log')
    const { log, lines: errors } = capturedLog('error')
    // So small that the opening checkpoint and the retention record put the new file past it at once.
    const sink = new FileAuditSink(file, log, { rotation: { maxBytes: 500, maxAgeMs: null, retainMs: 0 } })
    for (let i = 0; i < 40; i++) {
      const record = newAuditRecord(`req-${i}`, Date.now(), 'POST', `/svc/items/${i}`)
      record.outcome = 'forwarded'
      sink.write(record)
    }
    sink.closeNow()
    const lines = trailFiles(file).flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    )
    const named = lines
      .filter((l) => l.startsWith('{"type":"retention"'))
      .flatMap((l) => (JSON.parse(l) as RetentionAuditEvent).deleted.map((d) => d.file))
    expect(named.length).toBeGreaterThan(0)
    expect(new Set(named).size).toBe(named.length)
    expect(errors).toEqual([])
    expect(verifyLines(lines, null).breaks).toEqual([])
  })
})

describe('checkpoints signed later (a signer elsewhere, as Vault transit)', () => {
  /** A closed trail whose checkpoint signatures come from `signer`, called once per checkpoint in order. */
  async function signedLater(signs: (n: number) => boolean): Promise<string[]> {
    const file = join(mkdtempSync(join(tmpdir(), 'corridor-chain-')), 'audit.log')
    let n = 0
    const sink = new FileAuditSink(file, createLogger('silent'), {
      checkpointEntries: 100,
      signLater: (payload) => {
        const asked = ++n
        return new Promise((resolve, reject) =>
          setImmediate(() =>
            signs(asked)
              ? resolve({ signature: sign(null, payload, keys.privateKey).toString('base64'), keyVersion: null })
              : reject(new Error('down')),
          ),
        )
      },
    })
    for (let i = 0; i < 450; i++) {
      sink.write(newAuditRecord(`req-${i}`, Date.now(), 'GET', `/svc/items/${i}`))
      if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    await sink.close()
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
  }
  const checkpointSeqs = (lines: string[]) =>
    lines.filter((l) => l.startsWith(CHECKPOINT_LINE_PREFIX)).map((l) => (JSON.parse(l) as { seq: number }).seq)

  it('verifies every late signature, including the final one after the final checkpoint', async () => {
    const lines = await signedLater(() => true)
    const report = verifyLines(lines, keys.publicKey)
    expect(report).toMatchObject({ breaks: [], unclosed: [], unsigned: [] })
    expect(lines.filter((l) => l.startsWith('{"type":"checkpoint_signature",'))).toHaveLength(
      checkpointSeqs(lines).length,
    )
    expect(verifyLines(lines, otherKeys.publicKey).breaks).toEqual([
      expect.objectContaining({ why: expect.stringContaining('does not verify') }),
    ])
  })

  it('a checkpoint the signer missed is covered by a later signed one; only the unvouched tail is named', async () => {
    // The second checkpoint is never signed, the others are.
    const covered = await signedLater((n) => n !== 2)
    expect(verifyLines(covered, keys.publicKey)).toMatchObject({ breaks: [], unsigned: [] })
    // Only the first checkpoint is ever signed: every later one is named, and what follows the first is unvouched.
    const tail = await signedLater((n) => n === 1)
    const seqs = checkpointSeqs(tail)
    expect(verifyLines(tail, keys.publicKey)).toMatchObject({
      breaks: [],
      unsigned: [{ stream: expect.any(String), vouchedUpTo: seqs[0], checkpoints: seqs.slice(1) }],
    })
  })
})

describe('closing a trail whose final signature comes from elsewhere', () => {
  it('refuses entries offered after the final checkpoint, so the closed trail verifies', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'corridor-chain-')), 'audit.log')
    let releaseFinal: (() => void) | null = null
    const sink = new FileAuditSink(file, createLogger('silent'), {
      signLater: (payload) =>
        new Promise((resolve) => {
          // The final signature waits until the test lets it go.
          releaseFinal = () =>
            resolve({ signature: sign(null, payload, keys.privateKey).toString('base64'), keyVersion: 3 })
        }),
    })
    for (let i = 0; i < 5; i++)
      expect(sink.write(newAuditRecord(`req-${i}`, Date.now(), 'GET', `/svc/${i}`))).toBe(true)
    const closing = sink.close()
    expect(sink.close()).toBe(closing)
    await new Promise((resolve) => setImmediate(resolve))
    expect(releaseFinal).not.toBeNull()
    // While Vault signs the final checkpoint: nothing may follow it but that signature.
    const late = newAuditRecord('req-late', Date.now(), 'GET', '/svc/late')
    expect(sink.write(late)).toBe(false)
    expect(() => sink.writeIntent(late, 'forward', null)).toThrow()
    ;(releaseFinal as unknown as () => void)()
    await closing
    // And after the file is closed.
    expect(sink.write(late)).toBe(false)
    expect(sink.writeEvent({ type: 'audit_query', v: 1, time: new Date().toISOString() } as never)).toBe(false)
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
    expect(lines.some((l) => l.includes('req-late'))).toBe(false)
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ type: 'checkpoint_signature', key_version: 3 })
    expect(verifyLines(lines, keys.publicKey)).toMatchObject({ breaks: [], unclosed: [], unsigned: [] })
  })
})

describe('a witness: checkpoints copied elsewhere as they were written', () => {
  const { file, lines } = writeTrail(2_000, 500)
  const witness = lines.filter((l) => l.startsWith(CHECKPOINT_LINE_PREFIX))

  it('names a trail cut short, which the chain alone can only call unclosed', () => {
    expect(witness).toHaveLength(5) // every 500 entries, and the final one
    const cut = lines.slice(0, 1_200)
    expect(verifyLines(cut, keys.publicKey).unclosed).toEqual([expect.objectContaining({ lastSeq: 1_200 })])
    const report = verifyLines(cut, keys.publicKey, { witness })
    expect(report.unclosed).toEqual([])
    const lastBefore = witness
      .map((l) => JSON.parse(l) as { seq: number })
      .filter((c) => c.seq <= 1_200)
      .at(-1)
    expect(report.breaks).toEqual([
      expect.objectContaining({
        seq: 1_201,
        why: expect.stringContaining(`reached entry ${lines.length}`),
        lastCheckpoint: expect.objectContaining({ seq: lastBefore?.seq }),
        nextCheckpoint: expect.objectContaining({ seq: lines.length }),
      }),
    ])
    expect(verifyLines(lines, keys.publicKey, { witness }).breaks).toEqual([])
  })

  it('names a tail rewritten and chained again, which verifies without the key', () => {
    // A forger edits entry 700 and chains everything after it again, checkpoints included (their signatures go stale).
    const forged = lines.slice(0, 699)
    let prev = (forged.at(-1) as string).slice(-66, -2)
    for (const line of lines.slice(699)) {
      const body = line
        .replace(/"time":"[^"]*"/, forged.length === 699 ? '"time":"1999-01-01T00:00:00.000Z"' : '$&')
        .replace(/"prev":"[0-9a-f]{64}","hash":"[0-9a-f]{64}"\}$/, `"prev":"${prev}"}`)
        .replace(/"at_hash":"[0-9a-f]{64}"/, `"at_hash":"${prev}"`)
      const sealed = sealedLine(body)
      forged.push(sealed)
      prev = sealed.slice(-66, -2)
    }
    const unsigned = verifyLines(forged, null)
    expect(unsigned.breaks).toEqual([])
    const witnessed = verifyLines(forged, null, { witness })
    // The first checkpoint after the edit is where the copy and the trail part.
    const firstAfter = lines.findIndex((l, i) => i >= 699 && l.startsWith(CHECKPOINT_LINE_PREFIX)) + 1
    expect(witnessed.breaks).toEqual([
      expect.objectContaining({ seq: firstAfter, why: expect.stringContaining('differs from the copy') }),
    ])
  })

  it("does not count another replica's stream, which this trail does not hold, as cut short", () => {
    const other = writeTrail(10)
    const both = [...witness, ...other.lines.filter((l) => l.startsWith(CHECKPOINT_LINE_PREFIX))]
    const report = verifyLines(lines, keys.publicKey, { witness: both })
    expect(report.breaks).toEqual([])
    expect(report.witnessedElsewhere).toBe(1)
  })

  it('is refused when a copied line is not a checkpoint Corridor wrote', () => {
    expect(() => verifyLines(lines, keys.publicKey, { witness: [edited(witness[0] as string)] })).toThrow(
      /witness line 1 is not a checkpoint as Corridor wrote it/,
    )
    expect(() => verifyLines(lines, otherKeys.publicKey, { witness })).toThrow(/witness line 1/)
  })

  it('corridor audit checkpoints prints them; audit verify --witness checks a trail against them', () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['bin/corridor.js', 'audit', ...args], { encoding: 'utf8', timeout: 15_000 })
    const copied = cli('checkpoints', file)
    expect(copied.status).toBe(0)
    expect(copied.stdout.trim().split('\n')).toEqual(witness)
    const witnessFile = join(file, '..', 'witness.jsonl')
    writeFileSync(witnessFile, copied.stdout)
    const intact = cli('verify', file, '--witness', witnessFile)
    expect(intact.stdout).toContain('checked against 5 witnessed checkpoint(s)')
    expect(intact.status).toBe(0)
    const cutFile = join(file, '..', 'cut.log')
    writeFileSync(cutFile, lines.slice(0, 1_500).join('\n') + '\n')
    const cut = cli('verify', cutFile, '--witness', witnessFile)
    expect(cut.status).toBe(1)
    expect(cut.stderr).toMatch(/BROKEN stream [\w-]+ at entry 1501 .*cut short/)
    expect(cut.stderr).toMatch(
      /entries up to \d+ are covered by the checkpoint at entry \d+ \(.+\), which verified; the next checkpoint stands at entry 2\d{3}/,
    )
  })
})

const edited = (line: string): string => line.replace(/"time":"[^"]*"/, '"time":"1999-01-01T00:00:00.000Z"')
