/**
 * A time-bounded copy of the trail that still verifies. Entries are chained per stream, so a copy
 * cut at a time would start mid-chain and read as entries deleted. Instead each stream's copy
 * starts at its last checkpoint at or before its first entry in the window (or at the stream's
 * first entry when no checkpoint comes before it), runs without a gap, and ends before its first
 * entry after the window; streams with no entry in the window are left out. `corridor audit
 * verify --ocsf` then starts each stream at that checkpoint, as it starts a range in PostgreSQL.
 */
import { chainedEntry, CHECKPOINT_LINE_PREFIX } from './chain.ts'

export interface TimeWindow {
  /** Epoch milliseconds; undefined: unbounded. */
  readonly since?: number | undefined
  readonly until?: number | undefined
}

/** Where a line stands in its stream, and its time (epoch ms). */
export interface ChainPosition {
  readonly stream: string
  readonly seq: number
  readonly time: number
  readonly checkpoint: boolean
  /** The line parsed. */
  readonly entry: Record<string, unknown>
}

export function chainPosition(line: string): ChainPosition | null {
  const e = chainedEntry(line)
  if (e === null) return null
  return {
    stream: e['stream'] as string,
    seq: e['seq'] as number,
    time: Date.parse(typeof e['time'] === 'string' ? e['time'] : '') || 0,
    checkpoint: line.startsWith(CHECKPOINT_LINE_PREFIX),
    entry: e,
  }
}

export const inWindow = (time: number, w: TimeWindow): boolean =>
  (w.since === undefined || time >= w.since) && (w.until === undefined || time <= w.until)

/** The first pass over a trail: per stream with an entry in the window, the entry its copy starts at. */
export async function windowStarts(
  lines: Iterable<string> | AsyncIterable<string>,
  window: TimeWindow,
): Promise<Map<string, number>> {
  const first = new Map<string, number>()
  const lastCheckpoint = new Map<string, number>()
  const starts = new Map<string, number>()
  for await (const line of lines) {
    const p = chainPosition(line)
    if (p === null || starts.has(p.stream)) continue
    if (!first.has(p.stream)) first.set(p.stream, p.seq)
    if (p.checkpoint) lastCheckpoint.set(p.stream, p.seq)
    if (inWindow(p.time, window)) starts.set(p.stream, lastCheckpoint.get(p.stream) ?? (first.get(p.stream) as number))
  }
  return starts
}

/**
 * The second pass: whether a line belongs to the copy. `starts`: where each stream's copy starts
 * (windowStarts); null when the lines given already start each stream there (PostgreSQL reads a
 * stream from its checkpoint).
 */
export class WindowCopy {
  readonly #starts: ReadonlyMap<string, number> | null
  readonly #until: number | undefined
  readonly #ended = new Set<string>()

  constructor(until: number | undefined, starts: ReadonlyMap<string, number> | null) {
    this.#starts = starts
    this.#until = until
  }

  keep(p: ChainPosition): boolean {
    if (this.#starts !== null) {
      const start = this.#starts.get(p.stream)
      if (start === undefined || p.seq < start) return false
    }
    if (this.#ended.has(p.stream)) return false
    // Without a gap: the copy of a stream ends at its first entry after the window.
    if (this.#until !== undefined && p.time > this.#until) {
      this.#ended.add(p.stream)
      return false
    }
    return true
  }
}
