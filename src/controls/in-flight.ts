/**
 * The requests this replica is serving, by who and what they are for, so that a stop can cut
 * the ones in its scope (streams included) instead of letting them run to the end.
 */
import { stopFor, type Stop, type StopSubject } from './stop.ts'

interface Entry {
  readonly subject: StopSubject
  readonly cut: (stop: Stop) => void
}

export class InFlightRequests {
  readonly #entries = new Set<Entry>()

  /** Registers a request; the returned function unregisters it (call it when the request ends). */
  add(subject: StopSubject, cut: (stop: Stop) => void): () => void {
    const entry: Entry = { subject, cut }
    this.#entries.add(entry)
    return () => this.#entries.delete(entry)
  }

  /** Cuts every request the stop refuses; how many. */
  cut(stop: Stop, now: number): number {
    let cut = 0
    for (const entry of this.#entries) {
      if (stopFor([stop], entry.subject, now) === null) continue
      this.#entries.delete(entry)
      entry.cut(stop)
      cut++
    }
    return cut
  }

  /** How many requests a stop of this scope would cut (a dry run). */
  countIn(stop: Stop, now: number): number {
    let n = 0
    for (const entry of this.#entries) if (stopFor([stop], entry.subject, now) !== null) n++
    return n
  }
}
