/**
 * `corridor audit verify [file] [--public-key pem] [--store postgres]`: checks the hash chain of
 * every stream in an audit file (the configured one by default), or in the PostgreSQL copy of
 * every replica's trail (each row's columns checked against its line too), and, given the public
 * key, the checkpoints' signatures. Names the first broken sequence number of each stream; exit 1
 * on any break. On PostgreSQL, `--stream ID --from-seq N [--to-seq M]` verifies part of a long
 * stream, from its last signed checkpoint at or before N.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { ChainVerifier, CHECKPOINT_LINE_PREFIX, type VerifyReport } from '../../audit/chain.ts'
import { allTrailFiles, trailLines, trailsOf } from '../../audit/trails.ts'
import { linesFromOcsf } from '../../audit/ocsf.ts'
import type { VerifyRange } from '../../audit/postgres-store.ts'
import { loadServerConfig, type ServerConfig } from '../../config/server-config.ts'
import { TransitSigner } from '../../credentials/vault/transit-signer.ts'
import { VaultClient } from '../../credentials/vault/vault-client.ts'
import { VaultSession } from '../../credentials/vault/vault-session.ts'
import { createLogger } from '../../shared/logger.ts'
import { CONFIG_OPTION, configPath, UsageError, type Command } from '../command.ts'
import { storeOption, withPostgres } from './audit-query.ts'

/** Every trail of the file: each worker's, if it ran with workers, and each trail's rotated files. */
async function readLines(file: string): Promise<string[]> {
  const lines: string[] = []
  for await (const line of trailLines(file)) lines.push(line)
  return lines
}

export const auditVerifyCommand: Command = {
  words: ['audit', 'verify'],
  usage:
    'corridor audit verify [audit-file | --store postgres [--stream ID --from-seq N [--to-seq M]] | --ocsf exported-file [--bounded]] [--public-key checkpoint-key.pub.pem ...] [--witness checkpoints.jsonl] [--config corridor.yaml]',
  options: {
    ...CONFIG_OPTION,
    // Repeatable: a trail signed across a key rotation verifies with the public key of each version.
    'public-key': { type: 'string', multiple: true },
    store: { type: 'string' },
    ocsf: { type: 'boolean' },
    bounded: { type: 'boolean' },
    stream: { type: 'string' },
    'from-seq': { type: 'string' },
    'to-seq': { type: 'string' },
    witness: { type: 'string' },
  },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, out, err, env }) {
    const store = storeOption(values, 'file')
    if (store === 'postgres' && positionals[0] !== undefined)
      throw new UsageError('give an audit file or --store postgres, not both')
    const config = positionals[0] === undefined ? loadServerConfig(configPath(values)) : null
    const file = positionals[0] !== undefined ? resolve(positionals[0]) : (config as ServerConfig).auditFile
    const keyFiles = values['public-key']
    const publicKeys = Array.isArray(keyFiles) ? keyFiles.map((f) => createPublicKey(readFileSync(f as string))) : []
    const keysGiven = publicKeys.length > 0
    const ocsf = values['ocsf'] === true
    if (ocsf && positionals[0] === undefined) throw new UsageError('--ocsf verifies an exported file: name it')
    // Only when asked: a whole copy whose head was cut away at a checkpoint would otherwise pass.
    const bounded = values['bounded'] === true
    if (bounded && !ocsf) throw new UsageError('--bounded is for an --ocsf copy exported with --since')
    const range = rangeOf(values)
    if (range !== undefined && store !== 'postgres')
      throw new UsageError('--stream and --from-seq are for --store postgres')
    if (range !== undefined && !keysGiven)
      throw new UsageError('a range starts at a signed checkpoint: give --public-key to check its signature')
    const witnessFile = values['witness']
    if (typeof witnessFile === 'string' && range !== undefined)
      throw new UsageError('--witness checks a whole trail, not a range')
    const witness = typeof witnessFile === 'string' ? readFileSync(witnessFile, 'utf8').split('\n') : []
    let report: VerifyReport
    if (store === 'file') {
      // A copy exported with --since starts each stream at a checkpoint.
      const verifier = new ChainVerifier(publicKeys, { witness, fromCheckpoints: bounded })
      for (const line of ocsf ? linesFromOcsf(readFileSync(file, 'utf8').split('\n')) : await readLines(file))
        verifier.add(line)
      report = verifier.report()
    } else
      report = await withPostgres(config as ServerConfig, env, async (pgStore) => {
        const verifier = new ChainVerifier(publicKeys, { fromCheckpoints: range !== undefined, witness })
        for await (const row of pgStore.verificationRows(range)) verifier.add(row.line, row.problem)
        return verifier.report()
      })
    out(
      `${store === 'file' ? `${file}${ocsf ? '' : moreFiles(file)}` : range === undefined ? 'PostgreSQL' : `PostgreSQL, stream ${range.stream} from its last checkpoint at or before entry ${range.fromSeq}${range.toSeq === undefined ? '' : ` to entry ${range.toSeq}`}`}: ${report.entries} entries in ${report.streams} stream(s), ${report.checkpoints} checkpoint(s)` +
        (keysGiven ? ', signatures checked' : ' (signatures not checked: no --public-key)') +
        (report.unreadable > 0 ? `, ${report.unreadable} unreadable line(s)` : '') +
        (typeof witnessFile === 'string'
          ? `, checked against ${witness.filter((l) => l.trim() !== '').length} witnessed checkpoint(s)` +
            (report.witnessedElsewhere > 0
              ? ` (${report.witnessedElsewhere} witnessed stream(s) not in this trail: other replicas', or removed by retention)`
              : '')
          : ''),
    )
    for (const b of report.breaks) {
      err(`BROKEN stream ${b.stream} at entry ${b.seq} (line ${b.line}): ${b.why}`)
      // Which checkpoints bound the damage: what the last good one vouches for is intact.
      err(
        `  ${b.lastCheckpoint === null ? 'no checkpoint before it verified (the stream is vouched for from its start only)' : `entries up to ${b.lastCheckpoint.seq} are covered by the checkpoint at entry ${b.lastCheckpoint.seq} (${b.lastCheckpoint.time}), which verified`}; ` +
          `${b.nextCheckpoint === null ? 'no checkpoint follows it' : `the next checkpoint stands at entry ${b.nextCheckpoint.seq} (${b.nextCheckpoint.time})`}`,
      )
    }
    for (const { stream, lastSeq } of report.unclosed)
      out(
        `stream ${stream} ends at entry ${lastSeq} without a final checkpoint: still being written, cut off after entry ${lastSeq}, or its process died`,
      )
    for (const { stream, vouchedUpTo, checkpoints } of report.unsigned)
      out(
        `stream ${stream}: ${vouchedUpTo === 0 ? 'no signature vouches for any entry' : `no signature vouches for the entries after entry ${vouchedUpTo}`}: the checkpoint(s) at entry ${checkpoints.join(', ')} are UNSIGNED (their signature, to follow from Vault, is not in what was verified: Vault did not sign them, or it lies past the end of a range or copy)`,
      )
    // A range starts at a checkpoint by design; a file or a copy that does is worth saying.
    for (const { stream, firstSeq, fileStart, recorded } of range === undefined ? report.startedLater : [])
      out(
        fileStart
          ? recorded
            ? `stream ${stream} starts at entry ${firstSeq}, the opening checkpoint of a rotated file: the files before it were deleted by retention, as a retention record in the trail says`
            : `stream ${stream} starts at entry ${firstSeq}, the opening checkpoint of a rotated file: the files before it are not in this trail, and NO retention record says they were deleted by retention (removed another way, or before Corridor recorded retention)`
          : `stream ${stream} starts at entry ${firstSeq}, a checkpoint${keysGiven ? ' whose signature verified' : ''}: the entries before it are not in this copy (an export bounded by --since)`,
      )
    if (range !== undefined && report.entries === 0) {
      err(`no entries of stream '${range.stream}' in that range`)
      return 1
    }
    if (report.breaks.length === 0) out('chain intact')
    return report.breaks.length === 0 ? 0 : 1
  },
}

function rangeOf(values: Record<string, unknown>): VerifyRange | undefined {
  const stream = values['stream']
  const from = values['from-seq']
  const to = values['to-seq']
  if (stream === undefined && from === undefined && to === undefined) return undefined
  if (typeof stream !== 'string' || typeof from !== 'string')
    throw new UsageError('a range needs both --stream and --from-seq')
  const seq = (text: string, flag: string): number => {
    if (!/^[1-9]\d{0,15}$/.test(text)) throw new UsageError(`${flag} takes a sequence number, got '${text}'`)
    return Number(text)
  }
  return typeof to === 'string'
    ? { stream, fromSeq: seq(from, '--from-seq'), toSeq: seq(to, '--to-seq') }
    : { stream, fromSeq: seq(from, '--from-seq') }
}

/**
 * `corridor audit checkpoints [audit-file | --store postgres]`: the checkpoint entries as written,
 * one per line, for a witness outside Corridor's reach to keep (`audit verify --witness` then
 * names a trail cut short or a checkpoint rewritten).
 */
export const auditCheckpointsCommand: Command = {
  words: ['audit', 'checkpoints'],
  usage:
    'corridor audit checkpoints [audit-file | --store postgres] [--config corridor.yaml]   (for a witness to keep)',
  options: { ...CONFIG_OPTION, store: { type: 'string' } },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, out, env }) {
    const store = storeOption(values, 'file')
    if (store === 'postgres') {
      const config = loadServerConfig(configPath(values))
      await withPostgres(config, env, async (pgStore) => {
        for await (const line of pgStore.checkpointLines()) out(line)
      })
      return 0
    }
    const file = positionals[0] !== undefined ? resolve(positionals[0]) : loadServerConfig(configPath(values)).auditFile
    for (const line of await readLines(file)) if (line.startsWith(CHECKPOINT_LINE_PREFIX)) out(line)
    return 0
  },
}

/**
 * `corridor audit public-key`: the public key that verifies the checkpoints, as SPKI PEM, to
 * publish for whoever verifies them (`audit verify --public-key`): the public half of
 * `audit.signing_key_file`, or read from Vault for `audit.signing_transit` (the latest version,
 * or `--key-version N` for checkpoints signed before a rotation).
 */
export const auditPublicKeyCommand: Command = {
  words: ['audit', 'public-key'],
  usage:
    'corridor audit public-key [--key-version N] [--config corridor.yaml]   (publish it: audit verify --public-key takes it)',
  options: { ...CONFIG_OPTION, 'key-version': { type: 'string' } },
  positionals: { min: 0, max: 0 },
  async run({ values, out, env }) {
    const config = loadServerConfig(configPath(values))
    const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString().trimEnd()
    if (config.auditSigningKeyFile !== null) {
      out(pem(createPublicKey(readFileSync(config.auditSigningKeyFile))))
      return 0
    }
    const transit = config.auditSigningTransit
    if (transit === null || config.vault === null)
      throw new UsageError(
        'corridor.yaml has neither audit.signing_key_file nor audit.signing_transit: checkpoints are not signed',
      )
    const version = values['key-version']
    if (version !== undefined && (typeof version !== 'string' || !/^[1-9]\d{0,8}$/.test(version)))
      throw new UsageError('--key-version takes a key version number')
    const session = new VaultSession(new VaultClient(config.vault), config.vault.auth, env, createLogger('silent'))
    try {
      const key = await new TransitSigner(session, transit.mount, transit.key).publicKey(
        version === undefined ? undefined : Number(version),
      )
      out(pem(key))
    } finally {
      await session.close()
      await session.client.close()
    }
    return 0
  },
}

/** The files read besides the one named: rotated files, and the trails of workers. */
function moreFiles(file: string): string {
  const trails = trailsOf(file).length - 1
  const rotated = allTrailFiles(file).length - 1 - trails
  const parts = [
    ...(rotated > 0 ? [`${rotated} rotated file(s)`] : []),
    ...(trails > 0 ? [`the trails of ${trails} worker(s)`] : []),
  ]
  return parts.length === 0 ? '' : ` (and ${parts.join(' and ')})`
}
