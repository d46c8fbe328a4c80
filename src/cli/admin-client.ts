/**
 * The commands that talk to a running Corridor (approvals, stops) call its admin API: at
 * --admin URL, or at the admin listener named in corridor.yaml. Over HTTPS the client trusts
 * the admin certificate named there (or CORRIDOR_ADMIN_CA), and presents
 * CORRIDOR_ADMIN_CLIENT_CERT / CORRIDOR_ADMIN_CLIENT_KEY where the listener asks for a client
 * certificate. The caller's credential comes from the environment, never from a flag that would
 * land in shell history.
 */
import { readFileSync } from 'node:fs'
import { loadServerConfig } from '../config/server-config.ts'
import { configPath, type CommandContext, type Print } from './command.ts'

export interface AdminAnswer {
  readonly status: number
  readonly body: Record<string, unknown>
}

export type AdminCall = (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<AdminAnswer>

/** Files for the HTTPS connection to the admin listener (paths; read when the command runs). */
interface AdminTls {
  readonly ca: string | null
  readonly cert: string | null
  readonly key: string | null
}

function tlsFromEnv(env: NodeJS.ProcessEnv, configuredCert: string | null): AdminTls {
  return {
    ca: env['CORRIDOR_ADMIN_CA'] ?? configuredCert,
    cert: env['CORRIDOR_ADMIN_CLIENT_CERT'] ?? null,
    key: env['CORRIDOR_ADMIN_CLIENT_KEY'] ?? null,
  }
}

export const ADMIN_OPTION = { admin: { type: 'string' } } as const

/** A client of the admin API that authenticates with `token`. */
export async function adminClient(ctx: CommandContext, token: string): Promise<AdminCall> {
  const { values, env } = ctx
  let adminUrl = typeof values['admin'] === 'string' ? values['admin'] : undefined
  let tls: AdminTls = tlsFromEnv(env, null)
  if (adminUrl === undefined) {
    const admin = loadServerConfig(configPath(values)).admin
    const host = admin.host === '0.0.0.0' ? '127.0.0.1' : admin.host === '::' ? '::1' : admin.host
    adminUrl = `${admin.tls === null ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${admin.port}`
    // A self-signed admin certificate is trusted as configured; a CA-issued one through the system store.
    tls = tlsFromEnv(env, admin.tls?.certFile ?? null)
  }
  // Loaded here: the other commands do not need an HTTP client.
  const { Agent, request } = await import('undici')
  const read = (file: string | null): Buffer | undefined => (file ? readFileSync(file) : undefined)
  const dispatcher = adminUrl.startsWith('https:')
    ? new Agent({ connect: { ca: read(tls.ca), cert: read(tls.cert), key: read(tls.key) } })
    : undefined
  const base = adminUrl
  return async (method, path, body) => {
    const res = await request(base + path, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? null : JSON.stringify(body),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
      ...(dispatcher === undefined ? {} : { dispatcher }),
    })
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
  }
}

/** Prints a refusal from the admin API; the exit code for it. */
export function printFailure(answer: AdminAnswer, err: Print): number {
  err(
    `error ${answer.status} ${String(answer.body.code ?? '')}: ${String(answer.body.detail ?? answer.body.title ?? '')}`,
  )
  return 1
}
