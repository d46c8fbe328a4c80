/** An operational logger whose lines (at `level` and above) are kept for a test to read. */
import { Writable } from 'node:stream'
import { createLogger, type Logger } from '../../src/shared/logger.ts'

export function capturedLog(level: string): { readonly log: Logger; readonly lines: string[] } {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString())
      done()
    },
  })
  return { log: createLogger(level, sink), lines }
}
