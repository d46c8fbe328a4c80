/** Runs the corridor command line as a user would (a child process), with its exit code and both streams. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export async function corridorCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/corridor.js', ...args], {
      env: { ...process.env, ...env },
      timeout: 15_000,
    })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const err = e as CliResult
    return { code: err.code, stdout: err.stdout, stderr: err.stderr }
  }
}
