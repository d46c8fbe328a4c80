/**
 * `corridor audit verify [file] [--public-key pem]`: checks the hash chain of every stream in an
 * audit file (the configured one by default) and, given the public key, the checkpoints'
 * signatures. Names the first broken sequence number of each stream; exit 1 on any break.
 */
import { createReadStream, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { createPublicKey } from 'node:crypto'
import { verifyLines } from '../../audit/chain.ts'
import { loadServerConfig } from '../../config/server-config.ts'
import { CONFIG_OPTION, configPath, type Command } from '../command.ts'

async function readLines(file: string): Promise<string[]> {
  const lines: string[] = []
  for await (const line of createInterface({
    input: createReadStream(file, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  }))
    lines.push(line)
  return lines
}

export const auditVerifyCommand: Command = {
  words: ['audit', 'verify'],
  usage: 'corridor audit verify [audit-file] [--public-key checkpoint-key.pub.pem] [--config corridor.yaml]',
  options: { ...CONFIG_OPTION, 'public-key': { type: 'string' } },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, out, err }) {
    const file = positionals[0] !== undefined ? resolve(positionals[0]) : loadServerConfig(configPath(values)).auditFile
    const keyFile = values['public-key']
    const publicKey = typeof keyFile === 'string' ? createPublicKey(readFileSync(keyFile)) : null
    const report = verifyLines(await readLines(file), publicKey)
    out(
      `${file}: ${report.entries} entries in ${report.streams} stream(s), ${report.checkpoints} checkpoint(s)` +
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
