/**
 * What every `corridor` command is: its words, its usage line, the options it takes (anything
 * else is a usage error, exit 2: a security team's CI must never pass on a flag or a path that
 * was silently ignored), and what it does.
 */
import { existsSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { ParseArgsConfig } from 'node:util'
import { loadServerConfig, type BundlePaths } from '../config/server-config.ts'
import { ConfigError } from '../config/yaml-reader.ts'

export type Print = (line: string) => void

export interface CommandContext {
  readonly values: Record<string, string | boolean | string[] | undefined>
  readonly positionals: readonly string[]
  readonly out: Print
  readonly err: Print
  readonly env: NodeJS.ProcessEnv
}

export interface Command {
  /** The words that name it: ['policy', 'check']. */
  readonly words: readonly string[]
  readonly usage: string
  readonly options: NonNullable<ParseArgsConfig['options']>
  /** How many positional arguments it takes after its words. */
  readonly positionals: { readonly min: number; readonly max: number }
  run(ctx: CommandContext): Promise<number>
}

export class UsageError extends Error {}

export const DEFAULT_CONFIG = 'policies/corridor.yaml'

export const CONFIG_OPTION = { config: { type: 'string' } } as const

/**
 * The policy files a command reads: those named by a corridor.yaml, or the three files of a
 * directory (with or without a corridor.yaml in it). A path that holds neither is an error, never
 * a silent fallback to the default files.
 */
export function bundlePathsAt(path: string): BundlePaths {
  const target = resolve(path)
  if (!existsSync(target))
    throw new ConfigError([{ file: target, line: 1, col: 1, message: 'no such file or directory' }])
  if (!statSync(target).isDirectory()) return loadServerConfig(target).files
  const config = join(target, 'corridor.yaml')
  if (existsSync(config)) return loadServerConfig(config).files
  const files = {
    agents: join(target, 'agents.yaml'),
    connectors: join(target, 'connectors.yaml'),
    policy: join(target, 'policy.yaml'),
  }
  const missing = Object.values(files).filter((f) => !existsSync(f))
  if (missing.length > 0)
    throw new ConfigError(
      missing.map((file) => ({
        file,
        line: 1,
        col: 1,
        message: 'missing: a policy directory holds corridor.yaml, or agents.yaml, connectors.yaml and policy.yaml',
      })),
    )
  return files
}

/** The config file named by --config, or the default. */
export function configPath(values: CommandContext['values']): string {
  return resolve(typeof values['config'] === 'string' ? values['config'] : DEFAULT_CONFIG)
}
