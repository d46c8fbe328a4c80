/**
 * The name lookup of every outgoing HTTP connection Corridor makes (upstreams, Vault, token
 * endpoints, key sets, the approvals webhook, collectors): the host is resolved, every address it
 * resolves to is judged (egress-addresses.ts), and the connection goes to the addresses that were
 * judged. The check is the connection's own lookup, never a second one, so a name that resolves
 * somewhere else a moment later (DNS rebinding) cannot slip past it. One refused address among the
 * answers refuses them all: which one a connection would use is not Corridor's to pick. A host
 * written as an IP address is not looked up; the configuration refuses those when it is read.
 */
import { lookup as systemLookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from 'node:dns'
import type { LookupFunction } from 'node:net'
import { refusedAddressKind, type RefusedAddressKind } from './egress-addresses.ts'

/** A connection refused before it was made: the host resolved to an address Corridor never connects to. */
export class AddressRefused extends Error {
  readonly code = 'ERR_CORRIDOR_ADDRESS_REFUSED'
  readonly kind: RefusedAddressKind

  constructor(hostname: string, address: string, kind: RefusedAddressKind) {
    super(
      kind === 'corridor_itself'
        ? `'${hostname}' leads to ${address}, where Corridor itself listens on that port (corridor_itself): the call would loop back into Corridor`
        : `'${hostname}' resolved to ${address} (${kind}), an address Corridor never connects to`,
    )
    this.name = 'AddressRefused'
    this.kind = kind
  }
}

/** How names are resolved: the system's resolver (getaddrinfo, so /etc/hosts counts), as Node's own connections do. */
export type ResolveAll = (
  hostname: string,
  options: LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void

/**
 * A `lookup` for net.connect and tls.connect (through undici's `connect` options) that refuses
 * what must not be reached: the addresses no outgoing connection goes to, and those `isCorridor`
 * says lead back to Corridor's own listeners (on the port the connection is for).
 */
export function checkedLookup(
  resolve: ResolveAll = systemLookup,
  isCorridor: (address: string) => boolean = () => false,
): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err !== null) return callback(err, '', 0)
      for (const a of addresses) {
        const kind = refusedAddressKind(a.address) ?? (isCorridor(a.address) ? 'corridor_itself' : null)
        if (kind !== null) return callback(new AddressRefused(hostname, a.address, kind), '', 0)
      }
      if (options.all === true) return callback(null, addresses)
      const first = addresses[0]
      if (first === undefined)
        return callback(Object.assign(new Error(`'${hostname}' resolved to nothing`), { code: 'ENOTFOUND' }), '', 0)
      callback(null, first.address, first.family)
    })
  }
}
