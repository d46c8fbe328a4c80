/**
 * The Node flags Corridor ships with, read from where they are written: package.json's `start`
 * script (what the benchmarks run, and what the Dockerfile and `npm run corridor` must match).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The flags given to `node` in a command line, before its script: `node --a --b bin/corridor.js serve --config x` gives `--a --b`. */
export function nodeFlagsOf(command: readonly string[]): string[] {
  const flags: string[] = []
  for (const arg of command.slice(1)) {
    if (!arg.startsWith('--')) break
    flags.push(arg)
  }
  return flags
}

/** The package.json scripts of the checkout at `root`. */
export function scriptsOf(root: string): Readonly<Record<string, string>> {
  return (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts
}

/** The Node flags `npm start` runs Corridor with in the checkout at `root`. */
export function shippedNodeFlags(root: string): string[] {
  return nodeFlagsOf((scriptsOf(root).start ?? '').split(' '))
}
