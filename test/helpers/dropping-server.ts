/**
 * A server on loopback that drops every connection unanswered: an upstream or identity provider
 * that cannot be reached. It holds its port until closed. A port bound and released instead could
 * be taken meanwhile by another test's server, whose answer would make the test fail now and then.
 */
import { createServer, type AddressInfo } from 'node:net'

export interface DroppingServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  close(): Promise<void>
}

export async function startDroppingServer(): Promise<DroppingServer> {
  const server = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
