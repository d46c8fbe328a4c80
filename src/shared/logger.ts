/**
 * The operational log (not the audit trail): pino to stderr. Errors are serialised by hand to
 * message, name and code only, because library errors carry request configs with credentials
 * in them: axios-based clients such as node-vault put X-Vault-Token in `err.config` on timeouts
 * and refused connections, and pino's standard serializer would write it out.
 */
import { pino, type Logger } from 'pino'

export function safeError(err: unknown): { message: string; name?: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return { message: err.message, name: err.name, ...(typeof code === 'string' ? { code } : {}) }
  }
  return { message: String(err) }
}

export function createLogger(level: string = 'info', destination: NodeJS.WritableStream | number = 2): Logger {
  const stream = typeof destination === 'number' ? pino.destination({ fd: destination, sync: false }) : destination
  return pino(
    {
      level,
      base: { service: 'corridor' },
      serializers: { err: safeError, error: safeError },
      redact: { paths: ['*.authorization', '*.cookie', '*.headers', 'secret', '*.secret'], censor: '[REDACTED]' },
    },
    stream,
  )
}

export type { Logger }
