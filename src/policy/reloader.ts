/**
 * Keeps the policy bundle current: watches the three files, recompiles on change, and swaps the
 * new bundle in only when it compiles cleanly. A broken edit is reported with positions and the
 * last good bundle stays in force (smokescreen's broken-config fixtures, OPA's status API).
 */
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, formatIssue } from '../config/yaml-reader.ts'
import { loadBundle, type BundlePaths, type PolicyBundle } from './bundle.ts'

export interface ReloadStatus {
  readonly version: string | null
  readonly loadedAt: string | null
  readonly lastError: readonly string[] | null
  readonly lastAttemptAt: string | null
}

export class PolicyStore {
  #current: PolicyBundle | null = null
  #lastError: string[] | null = null
  #lastAttemptAt: string | null = null
  #watchers: FSWatcher[] = []
  #timer: NodeJS.Timeout | null = null
  readonly #paths: BundlePaths
  readonly #log: Logger
  readonly #listeners: ((bundle: PolicyBundle) => void)[] = []

  constructor(paths: BundlePaths, log: Logger) {
    this.#paths = paths
    this.#log = log
  }

  /** The bundle in force, or null if none ever compiled (Corridor then refuses every request). */
  get current(): PolicyBundle | null {
    return this.#current
  }

  status(): ReloadStatus {
    return {
      version: this.#current?.version ?? null,
      loadedAt: this.#current?.loadedAt ?? null,
      lastError: this.#lastError,
      lastAttemptAt: this.#lastAttemptAt,
    }
  }

  onChange(listener: (bundle: PolicyBundle) => void): void {
    this.#listeners.push(listener)
  }

  /** The first load: a broken bundle is thrown (a ConfigError with positions), since starting with no policy helps nobody. */
  loadInitial(): PolicyBundle {
    this.#lastAttemptAt = new Date().toISOString()
    const bundle = loadBundle(this.#paths)
    this.#current = bundle
    this.#log.info({ version: bundle.version }, 'policy loaded')
    return bundle
  }

  /** Recompiles now. Returns true when a new bundle is in force. */
  reload(): boolean {
    this.#lastAttemptAt = new Date().toISOString()
    let next: PolicyBundle
    try {
      next = loadBundle(this.#paths)
    } catch (err) {
      this.#lastError = err instanceof ConfigError ? err.issues.map(formatIssue) : [String((err as Error).message)]
      this.#log.error(
        { issues: this.#lastError, keptVersion: this.#current?.version ?? null },
        'policy rejected; the last good policy stays in force',
      )
      return false
    }
    this.#lastError = null
    if (next.version === this.#current?.version) return false
    const previous = this.#current?.version ?? null
    this.#current = next
    this.#log.info({ version: next.version, previous }, 'policy loaded')
    for (const listener of this.#listeners) listener(next)
    return true
  }

  /** Watches the directories holding the files (editors replace files by rename, which file watches miss). */
  watch(debounceMs = 150): void {
    const files = new Set(Object.values(this.#paths).map((p) => basename(p)))
    for (const dir of new Set(Object.values(this.#paths).map((p) => dirname(p)))) {
      const watcher = watch(dir, (_event, name) => {
        if (name !== null && !files.has(name.toString())) return
        if (this.#timer) clearTimeout(this.#timer)
        this.#timer = setTimeout(() => {
          this.#timer = null
          this.reload()
        }, debounceMs)
      })
      watcher.on('error', (err) => this.#log.error({ err }, 'policy watch failed'))
      this.#watchers.push(watcher)
    }
  }

  close(): void {
    for (const w of this.#watchers) w.close()
    this.#watchers = []
    if (this.#timer) clearTimeout(this.#timer)
  }
}
