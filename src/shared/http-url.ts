/** The URL when `text` is an absolute http(s) URL, else null (configuration readers report it with a position). */
export function parseHttpUrl(text: string): URL | null {
  if (!URL.canParse(text)) return null
  const url = new URL(text)
  return url.protocol === 'http:' || url.protocol === 'https:' ? url : null
}
