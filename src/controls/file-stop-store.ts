/**
 * Stops for one Corridor process without Redis: held in memory and written to a JSON file
 * (written to a temporary file and renamed, so a crash leaves the old or the new list, never half
 * of one), read back at start so that a restart keeps every stop in force.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Stop } from './stop.ts'
import type { StopStore } from './stop-store.ts'

export class FileStopStore implements StopStore {
  readonly #path: string
  readonly #stops = new Map<string, Stop>()
  readonly #listeners: (() => void)[] = []

  constructor(path: string) {
    this.#path = path
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    // A file that cannot be read as stops is not an empty list: starting with no stops could resume a stopped agent.
    const parsed = JSON.parse(text) as { stops?: unknown }
    if (!Array.isArray(parsed.stops)) throw new Error(`${path}: not a Corridor stops file`)
    for (const stop of parsed.stops as Stop[]) this.#stops.set(stop.id, stop)
  }

  load(): Promise<Stop[]> {
    return Promise.resolve([...this.#stops.values()])
  }

  put(stop: Stop): Promise<void> {
    this.#stops.set(stop.id, stop)
    this.#save()
    return Promise.resolve()
  }

  remove(id: string): Promise<Stop | null> {
    const stop = this.#stops.get(id) ?? null
    if (stop !== null) {
      this.#stops.delete(id)
      this.#save()
    }
    return Promise.resolve(stop)
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener)
  }

  close(): Promise<void> {
    return Promise.resolve()
  }

  #save(): void {
    mkdirSync(dirname(this.#path), { recursive: true })
    const tmp = `${this.#path}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify({ v: 1, stops: [...this.#stops.values()] }, null, 2) + '\n', {
      mode: 0o600,
      flush: true,
    })
    renameSync(tmp, this.#path)
    for (const listener of this.#listeners) listener()
  }
}
