/**
 * A configuration reader's refusal of a URL that would be used plain beyond loopback: reported at
 * the URL's position, naming the setting, what it would give away, and the mapping whose
 * `plaintext_beyond_loopback: true` allows it (by default the one holding the URL).
 */
import { parseHttpUrl } from '../shared/http-url.ts'
import { inClearRefusal } from '../shared/in-clear.ts'
import { pathText, type YamlReader } from './yaml-reader.ts'

/**
 * The http(s) URL a setting gives, or null, refused at its position when it is not one (`hint`
 * follows the refusal) and, when `inClear` says what it would give away, when it is plain beyond
 * loopback. `inClear` is null where the file allows it or the setting sends nothing to protect.
 */
export function httpUrlAt(
  r: YamlReader,
  at: readonly PropertyKey[],
  text: string,
  inClear: string | null,
  hint = '',
): URL | null {
  const url = parseHttpUrl(text)
  if (url === null) r.issueAt(at, `${pathText('', at)} must be an http(s) URL${hint}`)
  else if (inClear !== null) refuseInClear(r, at, url, inClear)
  return url
}

export function refuseInClear(
  r: YamlReader,
  at: readonly PropertyKey[],
  url: URL,
  consequence: string,
  allowAt: readonly PropertyKey[] = at.slice(0, -1),
): void {
  const problem = inClearRefusal(pathText('', at), url, consequence, pathText('', allowAt))
  if (problem !== null) r.issueAt(at, problem)
}
