/**
 * Where Corridor itself listens, so that no upstream connection goes there. A connector whose host
 * leads back to Corridor (a slip in the connectors file, or a name rebound to the gateway's own
 * address) would send each request, with the credential Corridor put in it, into Corridor again.
 * A listener bound to every address (0.0.0.0, ::) is reached through loopback and through any
 * address of the host's own interfaces; one bound to a single address, through that address
 * alone; always on its own port. What a NAT or a published container port maps back to Corridor
 * is beyond what the host can see, and is not caught here.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { networkInterfaces } from 'node:os'

/** A bound listener, as `server.address()` gives it. */
export interface Listening {
  readonly address: string
  readonly port: number
}

/** The host's interface addresses, as `os.networkInterfaces()` gives them. */
export type InterfaceAddresses = () => NodeJS.Dict<readonly { readonly address: string }[]>

export class OwnListeners {
  #listening: readonly Listening[] = []
  readonly #interfaces: InterfaceAddresses

  /** `interfaces`: read at each check (interfaces come and go); the host's own unless a test stands in. */
  constructor(interfaces: InterfaceAddresses = networkInterfaces) {
    this.#interfaces = interfaces
  }

  /** The listeners, once bound (their ports may have been chosen by the system). */
  set(listening: readonly Listening[]): void {
    this.#listening = listening.map(({ address, port }) => ({ address: canonical(address), port }))
  }

  /** Whether a connection to `address` (an IP) on `port` would reach one of Corridor's own listeners. */
  reaches(address: string, port: number): boolean {
    const own = this.#listening.filter((l) => l.port === port)
    if (own.length === 0) return false
    const target = canonical(address)
    return own.some(({ address: bound }) => {
      if (bound === '0.0.0.0') return isIPv4(target) && this.#isHostAddress(target)
      if (bound === '::') return this.#isHostAddress(target)
      return bound === target
    })
  }

  /** Loopback, or an address of one of the host's interfaces. */
  #isHostAddress(address: string): boolean {
    if (address === '::1' || (isIPv4(address) && address.startsWith('127.'))) return true
    for (const list of Object.values(this.#interfaces()))
      for (const info of list ?? []) if (canonical(info.address) === address) return true
    return false
  }
}

/** An IPv4 address carried as IPv4-mapped IPv6 is the IPv4 address; IPv6 in its one compressed spelling. */
function canonical(address: string): string {
  if (!isIPv6(address)) return address
  const compressed = new URL(`http://[${address}]`).hostname.slice(1, -1)
  // The URL parser writes an IPv4-mapped address in hex: ::ffff:7f00:1 for ::ffff:127.0.0.1.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed)
  if (mapped === null) return compressed
  const [hi, lo] = [Number.parseInt(mapped[1] as string, 16), Number.parseInt(mapped[2] as string, 16)]
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}
