/**
 * `corridor audit verify [file] [--public-key pem] [--store postgres]`: checks the hash chain of
 * every stream in an audit file (the configured one by default), or in the PostgreSQL copy of
 * every replica's trail, and, given the public key, the checkpoints' signatures. Names the first
 * broken sequence number of each stream; exit 1 on any break.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { createPublicKey } from 'node:crypto'
import { verifyLines } from '../../audit/chain.ts'
import { trailLines } from '../../audit/query.ts'
import { trailFiles } from '../../audit/rotation.ts'
import { linesFromOcsf } from '../../audit/ocsf.ts'
import { loadServerConfig, type ServerConfig } from '../../config/server-config.ts'
import { CONFIG_OPTION, configPath, UsageError, type Command } from '../command.ts'
import { trailOf } from './audit-query.ts'

/** The file's whole trail: its rotated files (oldest first), then the file. */
async function readLines(file: string): Promise<string[]> {
  const lines: string[] = []
  for await (const line of trailLines(file)) lines.push(line)
  return lines
}

export const auditVerifyCommand: Command = {
  words: ['audit', 'verify'],
  usage:
    'corridor audit verify [audit-file | --store postgres | --ocsf exported-file] [--public-key checkpoint-key.pub.pem] [--config corridor.yaml]',
  options: { ...CONFIG_OPTION, 'public-key': { type: 'string' }, store: { type: 'string' }, ocsf: { type: 'boolean' } },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, out, err, env }) {
    const store = values['store'] ?? 'file'
    if (store !== 'file' && store !== 'postgres')
      throw new UsageError(`--store is file or postgres, got '${String(store)}'`)
    if (store === 'postgres' && positionals[0] !== undefined)
      throw new UsageError('give an audit file or --store postgres, not both')
    const config = positionals[0] === undefined ? loadServerConfig(configPath(values)) : null
    const file = positionals[0] !== undefined ? resolve(positionals[0]) : (config as ServerConfig).auditFile
    const keyFile = values['public-key']
    const publicKey = typeof keyFile === 'string' ? createPublicKey(readFileSync(keyFile)) : null
    const ocsf = values['ocsf'] === true
    if (ocsf && positionals[0] === undefined) throw new UsageError('--ocsf verifies an exported file: name it')
    const lines =
      store === 'file'
        ? ocsf
          ? linesFromOcsf(readFileSync(file, 'utf8').split('\n'))
          : await readLines(file)
        : await trailOf(config as ServerConfig, env, 'postgres', {})
    const report = verifyLines(lines, publicKey)
    out(
      `${store === 'file' ? `${file}${!ocsf && trailFiles(file).length > 1 ? ` (and ${trailFiles(file).length - 1} rotated file(s))` : ''}` : 'PostgreSQL'}: ${report.entries} entries in ${report.streams} stream(s), ${report.checkpoints} checkpoint(s)` +
        (publicKey === null ? ' (signatures not checked: no --public-key)' : ', signatures checked') +
        (report.unreadable > 0 ? `, ${report.unreadable} unreadable line(s)` : ''),
    )
    for (const b of report.breaks) err(`BROKEN stream ${b.stream} at entry ${b.seq} (line ${b.line}): ${b.why}`)
    for (const stream of report.unclosed)
      out(`stream ${stream} ends without a final checkpoint: still being written, cut off, or its process died`)
    if (report.breaks.length === 0) out('chain intact')
    return report.breaks.length === 0 ? 0 : 1
  },
}
