/**
 * The error reference, generated from the catalogue so that it cannot drift from the code: as
 * Markdown for docs/errors.md, and as the HTML page Corridor serves at /_corridor/errors, where
 * every problem's `type` points (`/_corridor/errors#<code>`).
 */
import { CORRIDOR_PATH_PREFIX } from './corridor-paths.ts'
import { ERROR_CATALOG, type ErrorCode } from './errors.ts'

export const ERROR_REFERENCE_PATH = `${CORRIDOR_PATH_PREFIX}errors`

const CODES = Object.keys(ERROR_CATALOG) as ErrorCode[]

export function errorReferenceMarkdown(): string {
  let out = '# Error codes\n\n'
  out += '<!-- Generated from src/shared/errors.ts by `npm run docs:errors`; a test fails when they differ. -->\n\n'
  out +=
    'Every refusal is RFC 9457 problem+json with a stable `code` (also in the `x-corridor-error` header), the `request_id`\n'
  out += 'and, for policy decisions, `rule`, `reason`, `limiting_factor` and `policy_version`. Its `type` is\n'
  out += `\`${ERROR_REFERENCE_PATH}#<code>\`, this reference as Corridor serves it.\n\n`
  out += '| code | status | meaning | what to do |\n|---|---|---|---|\n'
  for (const code of CODES) {
    const e = ERROR_CATALOG[code]
    out += `| <a id="${code}"></a>\`${code}\` | ${e.status} | ${e.title} | ${e.action.replaceAll('|', '\\|')} |\n`
  }
  return out
}

const escapeHtml = (s: string): string =>
  s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;')
const inlineCode = (s: string): string => escapeHtml(s).replace(/`([^`]+)`/g, '<code>$1</code>')

export function errorReferenceHtml(): string {
  let out =
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Corridor error codes</title></head><body><h1>Corridor error codes</h1>'
  for (const code of CODES) {
    const e = ERROR_CATALOG[code]
    out += `<section id="${code}"><h2><code>${code}</code> (${e.status})</h2><p>${escapeHtml(e.title)}.</p><p>${inlineCode(e.action)}</p></section>`
  }
  return out + '</body></html>'
}
