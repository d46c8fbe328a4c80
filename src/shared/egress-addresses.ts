/**
 * The addresses Corridor never connects to over HTTP (an upstream call, Vault, a token endpoint, a
 * key set, the webhook, a collector), whatever the configured host names or resolves to. None of
 * them is where a system of record or a service Corridor relies on lives, and each is where a
 * request could reach something it must not:
 * - link-local (169.254.0.0/16, fe80::/10) and the cloud metadata services (169.254.169.254,
 *   fd00:ec2::254, 100.100.100.200), which hand out the host's own cloud credentials;
 * - unspecified (0.0.0.0/8, ::), which Linux connects to the host itself;
 * - multicast, the reserved 240.0.0.0/4 (with the broadcast address), and Teredo tunnels
 *   (2001::/32), whose real endpoint is hidden in the address.
 * Private and loopback addresses stay allowed: systems of record live on private networks, and
 * sidecars on loopback. An IPv4 address carried inside an IPv6 one (IPv4-mapped, NAT64's
 * 64:ff9b::/96, SIIT's ::ffff:0:0/96, 6to4's 2002::/16) is judged as the IPv4 address it carries. Addresses are judged as
 * IPs, as the connection will use them, never as the text of a URL.
 */
import { BlockList, isIP } from 'node:net'

/** Why an address is refused: named in refusals, and the audit record's `error_detail`. */
export type RefusedAddressKind =
  | 'link_local'
  | 'cloud_metadata'
  | 'unspecified'
  | 'multicast'
  | 'reserved'
  | 'tunnelled'
  /** One of Corridor's own listeners (forwarding/own-listeners.ts): the call would loop back into Corridor. */
  | 'corridor_itself'

const IPV4: readonly (readonly [string, number, RefusedAddressKind])[] = [
  ['169.254.169.254', 32, 'cloud_metadata'],
  ['100.100.100.200', 32, 'cloud_metadata'],
  ['169.254.0.0', 16, 'link_local'],
  ['0.0.0.0', 8, 'unspecified'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
]

const IPV6: readonly (readonly [string, number, RefusedAddressKind])[] = [
  ['fd00:ec2::254', 128, 'cloud_metadata'],
  ['fe80::', 10, 'link_local'],
  ['::', 128, 'unspecified'],
  ['ff00::', 8, 'multicast'],
  ['2001::', 32, 'tunnelled'],
]

/** `a.b.c.d` as the two hextets an IPv6 address carries it in. */
function hextets(ipv4: string): [string, string] {
  const [a, b, c, d] = ipv4.split('.').map(Number) as [number, number, number, number]
  return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)]
}

/** One block list per kind, first match wins: the metadata addresses before the link-local range holding them. */
const LISTS: readonly (readonly [BlockList, RefusedAddressKind])[] = (() => {
  const lists = new Map<RefusedAddressKind, BlockList>()
  const listOf = (kind: RefusedAddressKind): BlockList => {
    let list = lists.get(kind)
    if (list === undefined) lists.set(kind, (list = new BlockList()))
    return list
  }
  for (const [net, prefix, kind] of IPV4) {
    // BlockList matches IPv4-mapped addresses against IPv4 rules itself; NAT64, SIIT's IPv4-translated
    // addresses (::ffff:0:0/96) and 6to4 need their own.
    const [hi, lo] = hextets(net)
    listOf(kind).addSubnet(net, prefix, 'ipv4')
    listOf(kind).addSubnet(`64:ff9b::${hi}:${lo}`, 96 + prefix, 'ipv6')
    listOf(kind).addSubnet(`::ffff:0:${hi}:${lo}`, 96 + prefix, 'ipv6')
    listOf(kind).addSubnet(`2002:${hi}:${lo}::`, 16 + prefix, 'ipv6')
  }
  for (const [net, prefix, kind] of IPV6) listOf(kind).addSubnet(net, prefix, 'ipv6')
  return [...lists].map(([kind, list]) => [list, kind] as const)
})()

/** The kind of refused address `ip` is, or null when Corridor may connect to it (or it is not an IP). */
export function refusedAddressKind(ip: string): RefusedAddressKind | null {
  const family = isIP(ip)
  if (family === 0) return null
  const type = family === 4 ? 'ipv4' : 'ipv6'
  for (const [list, kind] of LISTS) if (list.check(ip, type)) return kind
  return null
}

/**
 * Why a URL setting may not be used, or null: its host is written as an address Corridor never
 * connects to. A host that is a name is judged each time it is resolved (checked-lookup.ts).
 */
export function refusedHostProblem(setting: string, url: URL): string | null {
  const address = hostAddress(url.hostname)
  const kind = address === null ? null : refusedAddressKind(address)
  return kind === null ? null : `${setting} is an address Corridor never connects to (${address}: ${kind})`
}

/** A URL's host as an IP address (IPv6 without its brackets), or null when it is a name. */
export function hostAddress(hostname: string): string | null {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
  return isIP(bare) === 0 ? null : bare
}
