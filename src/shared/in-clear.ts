/**
 * Whether what Corridor sends over a connection crosses the network unencrypted. A connection to
 * a loopback interface never leaves the machine; beyond it, plain HTTP and plain Redis do.
 */
import { hostAddress } from './egress-addresses.ts'

/**
 * Loopback interfaces, by the name or address a listener binds to or a URL names (IPv6 with or
 * without brackets). A name that merely resolves to loopback does not count: what it resolves to
 * can change.
 */
export function isLoopbackHost(host: string): boolean {
  const h = hostAddress(host) ?? host
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/** Schemes whose connections carry no TLS. `https:` and `rediss:` do; others are their reader's business. */
const CLEAR_SCHEMES: ReadonlySet<string> = new Set(['http:', 'redis:'])

/**
 * True for a plain-HTTP or plain-Redis URL to anything but loopback. The URL parser has already
 * normalised the host (`127.1`, `0x7f000001` and `LOCALHOST` read as loopback; `localhost.` and
 * `[::ffff:127.0.0.1]` do not), so this reads it as the connection will.
 */
export function sentInClear(url: URL): boolean {
  return CLEAR_SCHEMES.has(url.protocol) && !isLoopbackHost(url.hostname)
}

/**
 * What each kind of connection would give away, plain beyond loopback: the one sentence both a
 * refusal and the setting that allows it (`plaintext_beyond_loopback`) state.
 */
export const IN_CLEAR = {
  vault: 'the Vault token and every secret Vault returns would cross the network in clear',
  jwks: 'anyone on the path could swap the keys and forge tokens',
  upstream: 'the credential Corridor injects would cross the network in clear',
  tokenUrl: 'the client secret and the token would cross the network in clear',
  redis:
    'its password, held requests and stops would cross the network in clear, and anyone on the path could change them',
  // Slack and the like put the token in the webhook's path.
  webhook: 'the webhook URL (often a token) and the summaries of held requests would cross the network in clear',
  otlp: 'the headers of headers_env (an API key) would cross the network in clear',
  postgres:
    'the audit trail, and what auditors query of it, would cross the network in clear, and anyone on the path could change what a query shows',
} as const

/**
 * The refusal of `url` for `setting` when it is sent in clear, or null: what would happen, and
 * the two ways out (TLS, or `<allowAt>.plaintext_beyond_loopback: true`).
 */
export function inClearRefusal(setting: string, url: URL, consequence: string, allowAt: string): string | null {
  if (!sentInClear(url)) return null
  const [plain, tls] = url.protocol === 'redis:' ? ['Redis', 'rediss://'] : ['HTTP', 'https']
  return `${setting} is plain ${plain} beyond loopback: ${consequence}; use ${tls}, or set ${allowAt}.plaintext_beyond_loopback: true`
}
