/**
 * Reads a V8 CPU profile (`node --cpu-prof`) and tells what share of the process's busy samples, in
 * a window before the profile ended, fell in given code: the benchmark's second measure of what
 * telemetry costs a request, one that the machine's load does not move as it moves req/s. V8
 * samples wall time on the main thread, so time spent waiting for the CPU counts as busy too.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string }
  readonly children?: readonly number[]
}
interface Profile {
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

export interface CodeMatch {
  /** Scripts whose frames count with everything they call. */
  readonly inclusive: RegExp
  /** Scripts whose frames count only for their own time (wrappers around the request's own work). */
  readonly self: RegExp
}

/**
 * Busy seconds in the window (idle samples left out) and the share of them with a matching frame.
 * The window is the `seconds` before the last `tailSeconds` of the profile (shutdown).
 */
export function profileShare(
  file: string,
  match: CodeMatch,
  seconds: number,
  tailSeconds = 0.2,
): { busySeconds: number; share: number } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parentOf = new Map<number, number>()
  for (const n of profile.nodes) for (const child of n.children ?? []) parentOf.set(child, n.id)
  const underMatch = new Map<number, boolean>()
  const inclusiveMatch = (id: number): boolean => {
    const known = underMatch.get(id)
    if (known !== undefined) return known
    const parent = parentOf.get(id)
    const result =
      match.inclusive.test(byId.get(id)?.callFrame.url ?? '') || (parent !== undefined && inclusiveMatch(parent))
    underMatch.set(id, result)
    return result
  }
  let end = 0
  for (const d of profile.timeDeltas) end += d
  const from = end - (seconds + tailSeconds) * 1e6
  const to = end - tailSeconds * 1e6
  let t = 0
  let busy = 0
  let matched = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    t += dt
    const node = byId.get(id)
    if (t < from || t > to || node === undefined || node.callFrame.functionName === '(idle)') return
    busy += dt
    if (match.self.test(node.callFrame.url) || inclusiveMatch(id)) matched += dt
  })
  return { busySeconds: busy / 1e6, share: busy === 0 ? 0 : matched / busy }
}
