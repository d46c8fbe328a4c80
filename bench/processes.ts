/**
 * The benchmarks' child processes: each one tracked from its start, so that every process a run
 * started is stopped, by PID, however the run ends; a bench/target.ts process awaited until it
 * prints `READY <url>`. And the one number format the benchmarks print.
 */
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

/** Every child still running. */
export const children = new Set<ChildProcess>()

/** Tracks `child` until it exits. */
export function track(child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** The URL a bench/target.ts process prints once it listens; `onLine` hears every other line of its output. */
export function readyUrl(
  child: ChildProcess,
  what: string,
  onLine: (line: string) => void = () => {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.startsWith('READY ')) resolve(line.slice(6))
      else onLine(line)
    })
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code} before it was ready`)))
  })
}

/** SIGTERM, then SIGKILL after `graceMs` (at once when 0); resolves when the process is gone. */
export function stopChild(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    if (graceMs > 0) child.kill('SIGTERM')
  })
}

/** Kills every child still running (a run that failed or was interrupted). */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL')
}

export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '–'
