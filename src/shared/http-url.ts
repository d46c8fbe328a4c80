/** The URL when `text` is an absolute http(s) URL, else null (configuration readers report it with a position). */
export function parseHttpUrl(text: string): URL | null {
  if (!URL.canParse(text)) return null
  const url = new URL(text)
  return url.protocol === 'http:' || url.protocol === 'https:' ? url : null
}

/**
 * Loopback interfaces, by the name or address a listener binds to or a URL names (IPv6 with or
 * without brackets): nothing sent to them crosses the network. A name that merely resolves to
 * loopback does not count, since what it resolves to can change.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * Whether what is sent to `url` crosses the network unencrypted: plain HTTP to anything but
 * loopback. The URL parser has already normalised the host (`127.1`, `0x7f000001` and
 * `LOCALHOST` read as loopback; `localhost.` and `[::ffff:127.0.0.1]` do not).
 */
export function sentInClear(url: URL): boolean {
  return url.protocol === 'http:' && !isLoopbackHost(url.hostname)
}
