/**
 * Extra headers for an OTLP/HTTP export (a hosted collector's API key), read from the environment
 * variable a setting names, in the format of OpenTelemetry's OTEL_EXPORTER_OTLP_HEADERS: name=value
 * pairs separated by commas, each value percent-decoded, so the value a collector's vendor gives for
 * that variable works here as it is. The text is a credential: errors name the setting, the
 * variable and the pair's position, never the text itself.
 */

/** An HTTP field name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Bytes no HTTP field value may hold: a value with them could end the header early. */
const FORBIDDEN_IN_VALUE = /[\r\n\0]/
/** Headers the exporter sets itself, whose meaning another value would change. */
const OWN = new Set(['host', 'content-type', 'content-length', 'transfer-encoding', 'connection'])

export function otlpHeadersFrom(
  variable: string | null,
  env: Readonly<Record<string, string | undefined>>,
  setting: string,
): Readonly<Record<string, string>> {
  if (variable === null) return {}
  const text = env[variable]
  const where = `${setting}.headers_env names ${variable}`
  if (text === undefined || text.trim() === '') throw new Error(`${where}, which is not set`)
  const headers: Record<string, string> = {}
  const pairs = text.split(',')
  for (const [i, pair] of pairs.entries()) {
    if (pair.trim() === '') continue
    const at = `${where}: pair ${i + 1} of ${pairs.length}`
    const eq = pair.indexOf('=')
    if (eq < 0) throw new Error(`${at} is not name=value`)
    const name = pair.slice(0, eq).trim().toLowerCase()
    if (!TOKEN.test(name)) throw new Error(`${at} has a name that is not an HTTP header name`)
    if (OWN.has(name)) throw new Error(`${at} sets ${name}, which the exporter sets itself`)
    let value: string
    try {
      value = decodeURIComponent(pair.slice(eq + 1).trim())
    } catch {
      throw new Error(`${at} has a value that is not valid percent-encoding`)
    }
    if (FORBIDDEN_IN_VALUE.test(value)) throw new Error(`${at} has a value with a line break or NUL`)
    headers[name] = value
  }
  return headers
}
