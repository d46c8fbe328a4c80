/**
 * A configuration reader's checks of a URL setting, each refusal reported at the URL's position:
 * that it is an http(s) URL, that its host is not written as an address Corridor never connects
 * to, and that it is not used plain beyond loopback where that would give something away.
 */
import { parseHttpUrl } from '../shared/http-url.ts'
import { refusedHostProblem } from '../shared/egress-addresses.ts'
import { inClearRefusal } from '../shared/in-clear.ts'
import { pathText, type YamlReader } from './yaml-reader.ts'

/**
 * The http(s) URL a setting gives, or null, refused at its position when it is not one (`hint`
 * follows the refusal) and, when `inClear` says what it would give away, when it is plain beyond
 * loopback (`allowAt` as for refuseInClear). `inClear` is null where the file allows it or the
 * setting sends nothing to protect.
 */
export function httpUrlAt(
  r: YamlReader,
  at: readonly PropertyKey[],
  text: string,
  check: { readonly inClear: string | null; readonly hint?: string; readonly allowAt?: readonly PropertyKey[] },
): URL | null {
  const url = parseHttpUrl(text)
  if (url === null) {
    r.issueAt(at, `${pathText('', at)} must be an http(s) URL${check.hint ?? ''}`)
    return null
  }
  const refused = refusedHostProblem(pathText('', at), url)
  if (refused !== null) r.issueAt(at, refused)
  if (check.inClear !== null) refuseInClear(r, at, url, check.inClear, check.allowAt)
  return url
}

/**
 * Refuses `url` when it is plain beyond loopback, naming the setting, what it would give away, and
 * the mapping whose `plaintext_beyond_loopback: true` allows it (by default the one holding the URL).
 */
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
