/** The error reference cannot drift: docs/errors.md is the catalogue's, and every code is produced somewhere. */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { errorReferenceMarkdown } from '../../src/shared/error-reference.ts'
import { ERROR_CATALOG } from '../../src/shared/errors.ts'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
  })
}

describe('error reference', () => {
  it('docs/errors.md is exactly what the catalogue generates (run npm run docs:errors after changing a code)', () => {
    expect(readFileSync('docs/errors.md', 'utf8')).toBe(errorReferenceMarkdown())
  })

  it('every documented code is produced somewhere in the source, and every section says what to do', () => {
    const text = sources('src')
      .filter((p) => !p.endsWith(join('shared', 'errors.ts')))
      .map((p) => readFileSync(p, 'utf8'))
      .join('\n')
    const unused = Object.keys(ERROR_CATALOG).filter((code) => !text.includes(`'${code}'`))
    expect(unused).toEqual([])
    for (const [code, e] of Object.entries(ERROR_CATALOG)) expect([code, e.action.length > 20]).toEqual([code, true])
  })
})
