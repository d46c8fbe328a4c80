/** `corridor schema <format>`: prints the JSON Schema of one of Corridor's files, for editors and CI linters. */
import { FORMAT_NAMES, jsonSchemaText, type FileFormat } from '../file-formats.ts'
import { UsageError, type Command } from '../command.ts'

export const schemaCommand: Command = {
  words: ['schema'],
  usage: `corridor schema <${FORMAT_NAMES.join(' | ')}>`,
  options: {},
  positionals: { min: 1, max: 1 },
  run({ positionals, out }) {
    const format = positionals[0] as string
    if (!(FORMAT_NAMES as readonly string[]).includes(format))
      throw new UsageError(`unknown format '${format}' (one of: ${FORMAT_NAMES.join(', ')})`)
    out(jsonSchemaText(format as FileFormat).trimEnd())
    return Promise.resolve(0)
  },
}
