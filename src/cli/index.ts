/**
 * The `corridor` command line: finds the command its first words name (one file each under
 * commands/), parses exactly the options that command takes, and maps failures to exit codes:
 * 2 for a usage error (unknown command, option or argument), 1 for a configuration or runtime
 * error (every configuration problem printed as file:line:column), 0 for success.
 */
import { parseArgs } from 'node:util'
import { ConfigError, formatIssue } from '../config/yaml-reader.ts'
import { UsageError, type Command } from './command.ts'
import { approvalsCommand } from './commands/approvals.ts'
import {
  auditExportCommand,
  auditReportCommand,
  auditMigrateCommand,
  auditQueryCommand,
  auditTraceCommand,
} from './commands/audit-query.ts'
import { auditCheckpointsCommand, auditPublicKeyCommand, auditVerifyCommand } from './commands/audit-verify.ts'
import { keysMintCommand } from './commands/keys-mint.ts'
import { resumeCommand, stopCommand, stopsCommand } from './commands/stops.ts'
import { policyCheckCommand } from './commands/policy-check.ts'
import { policyExplainCommand } from './commands/policy-explain.ts'
import { policyTestCommand } from './commands/policy-test.ts'
import { schemaCommand } from './commands/schema.ts'
import { serveCommand } from './commands/serve.ts'

const COMMANDS: readonly Command[] = [
  serveCommand,
  policyCheckCommand,
  policyTestCommand,
  policyExplainCommand,
  keysMintCommand,
  approvalsCommand,
  stopCommand,
  resumeCommand,
  stopsCommand,
  auditQueryCommand,
  auditMigrateCommand,
  auditTraceCommand,
  auditExportCommand,
  auditReportCommand,
  auditVerifyCommand,
  auditCheckpointsCommand,
  auditPublicKeyCommand,
  schemaCommand,
]

const USAGE = 'usage:\n' + COMMANDS.map((c) => `  ${c.usage}`).join('\n')

const out = (line: string): void => void process.stdout.write(line + '\n')
const err = (line: string): void => void process.stderr.write(line + '\n')

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    out(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  const command = COMMANDS.find((c) => c.words.every((w, i) => argv[i] === w))
  try {
    if (command === undefined) throw new UsageError(`unknown command '${argv.slice(0, 2).join(' ')}'`)
    const { values, positionals } = parseArgs({
      args: argv.slice(command.words.length),
      options: { ...command.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    })
    if (values.help === true) {
      out(`usage: ${command.usage}`)
      return 0
    }
    const { min, max } = command.positionals
    if (positionals.length < min || positionals.length > max) {
      throw new UsageError(
        max === 0
          ? `'${command.words.join(' ')}' takes no arguments, got '${positionals.join(' ')}'`
          : `'${command.words.join(' ')}' takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${positionals.length}`,
      )
    }
    return await command.run({ values, positionals, out, err, env: process.env })
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const issue of e.issues) err(formatIssue(issue))
      return 1
    }
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      err((e as Error).message)
      err(command === undefined ? USAGE : `usage: ${command.usage}`)
      return 2
    }
    err(`error: ${(e as Error).message}`)
    return 1
  }
}
