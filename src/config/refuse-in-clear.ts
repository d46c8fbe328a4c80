/**
 * A configuration reader's refusal of a URL that would be used plain beyond loopback: reported at
 * the URL's position, naming the setting, what it would give away, and the mapping whose
 * `plaintext_beyond_loopback: true` allows it (by default the one holding the URL).
 */
import { inClearRefusal } from '../shared/in-clear.ts'
import { pathText, type YamlReader } from './yaml-reader.ts'

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
