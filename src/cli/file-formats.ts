/**
 * Every file format Corridor reads, by name, with its JSON Schema. The schemas are generated
 * from the same declarations the loaders check files against, so an editor (through
 * yaml-language-server's `# yaml-language-server: $schema=…` modeline) completes and flags
 * exactly what Corridor accepts in shape. Checks across fields and files (unknown references,
 * duplicate ids) are the loader's alone: run `corridor policy check`.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as z from 'zod'
import { corridorFileSchema } from '../config/corridor-schema.ts'
import { policyFileSchema } from '../policy/policy-schema.ts'
import { agentsFileSchema } from '../registry/agents-schema.ts'
import { connectorsFileSchema } from '../registry/connectors-schema.ts'
import { policyTestFileSchema } from './commands/policy-test-schema.ts'

export const FILE_FORMATS = {
  corridor: corridorFileSchema,
  agents: agentsFileSchema,
  connectors: connectorsFileSchema,
  policy: policyFileSchema,
  'policy-test': policyTestFileSchema,
} as const

export type FileFormat = keyof typeof FILE_FORMATS

export const FORMAT_NAMES = Object.keys(FILE_FORMATS) as FileFormat[]

/** Draft 7, the newest draft yaml-language-server and most editors fully support; the input side (what the file holds). */
export function jsonSchemaOf(format: FileFormat): Record<string, unknown> {
  return {
    ...z.toJSONSchema(FILE_FORMATS[format], { io: 'input', target: 'draft-7', unrepresentable: 'any', reused: 'ref' }),
    $id: `https://corridor.dev/schemas/${format}.schema.json`,
    title: format === 'policy-test' ? 'Corridor policy test suite' : `Corridor ${format}.yaml`,
  }
}

export function jsonSchemaText(format: FileFormat): string {
  return JSON.stringify(jsonSchemaOf(format), null, 2) + '\n'
}

/** Writes `<format>.schema.json` for every format into `dir` (npm run docs:schemas). */
export function writeJsonSchemas(dir: string): void {
  mkdirSync(dir, { recursive: true })
  for (const format of FORMAT_NAMES) writeFileSync(join(dir, `${format}.schema.json`), jsonSchemaText(format))
}
