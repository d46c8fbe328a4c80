/** Reads a response body into a string, giving up (and destroying the stream) past `max` bytes. */
export async function readLimited(
  body: AsyncIterable<Buffer> & { destroy(): void },
  max: number,
  tooLarge: () => Error,
): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > max) {
      body.destroy()
      throw tooLarge()
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
