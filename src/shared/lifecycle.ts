/**
 * Where the process stands on its way down, shared by the agent listener (which counts requests
 * in flight), the admin listener (readiness turns 503 the moment draining starts) and the
 * pipeline (a request cut when the grace ran out is recorded as such, not as the agent leaving).
 *
 * Shutdown follows Envoy's drain: readiness fails first, the listeners stop accepting, requests in
 * flight finish within the grace, and only then are the remaining connections closed.
 */
export type Phase = 'serving' | 'draining' | 'cutting'

export class Lifecycle {
  #phase: Phase = 'serving'
  #inFlight = 0
  #idle: (() => void)[] = []

  get phase(): Phase {
    return this.#phase
  }

  get inFlight(): number {
    return this.#inFlight
  }

  /** Counts one request until `done` is called (once). */
  begin(): () => void {
    this.#inFlight++
    let ended = false
    return () => {
      if (ended) return
      ended = true
      this.#inFlight--
      if (this.#inFlight === 0) for (const wake of this.#idle.splice(0)) wake()
    }
  }

  drain(): void {
    if (this.#phase === 'serving') this.#phase = 'draining'
  }

  /** The grace ran out: what is still in flight is about to be cut. */
  cut(): void {
    this.#phase = 'cutting'
  }

  /** Resolves when nothing is in flight, or at `deadline` (ms since the epoch), whichever comes first. */
  whenIdle(deadline: number): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()))
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
      this.#idle.push(done)
    })
  }
}
