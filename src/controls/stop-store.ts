/**
 * Where stops are kept: Redis when replicas share state (redis-stop-store.ts), a local file on
 * the embedded defaults (file-stop-store.ts), so that a restart keeps a stop in force either way.
 */
import type { Stop } from './stop.ts'

export interface StopStore {
  /** Every stop kept (expired ones included until someone removes them). Throws when the store cannot be read. */
  load(): Promise<Stop[]>
  /** Adds a stop, replacing one with the same id. */
  put(stop: Stop): Promise<void>
  /** Removes a stop; the stop removed, or null when there was none. */
  remove(id: string): Promise<Stop | null>
  /** Called when any replica changed the stops (a hint: the board then reloads). */
  onChange(listener: () => void): void
  close(): Promise<void>
}

export class StopStoreUnavailable extends Error {
  override readonly name = 'StopStoreUnavailable'
}
