/**
 * Where an upstream call may go: every spelling of an address is judged as the IP the connection
 * would use (the URL parser's reading for a host in a URL, the resolver's answers for a name),
 * link-local, metadata, unspecified, multicast, reserved and tunnelled addresses are refused, in
 * IPv4 and IPv6 and with IPv4 carried inside IPv6, and private and loopback ones are not.
 */
import { describe, expect, it } from 'vitest'
import { YamlReader } from '../../src/config/yaml-reader.ts'
import { checkedLookup, AddressRefused, type ResolveAll } from '../../src/shared/checked-lookup.ts'
import { readConnectorCatalog } from '../../src/registry/connectors.ts'
import { hostAddress, refusedAddressKind } from '../../src/shared/egress-addresses.ts'
import { tableResolver } from '../helpers/table-resolver.ts'

const REFUSED: readonly (readonly [string, string])[] = [
  ['169.254.169.254', 'cloud_metadata'],
  ['100.100.100.200', 'cloud_metadata'],
  ['fd00:ec2::254', 'cloud_metadata'],
  ['::ffff:169.254.169.254', 'cloud_metadata'],
  ['::ffff:a9fe:a9fe', 'cloud_metadata'],
  ['64:ff9b::a9fe:a9fe', 'cloud_metadata'], // NAT64
  ['64:ff9b::169.254.169.254', 'cloud_metadata'],
  ['2002:a9fe:a9fe::1', 'cloud_metadata'], // 6to4
  ['::ffff:0:a9fe:a9fe', 'cloud_metadata'], // SIIT's IPv4-translated
  ['::ffff:0:169.254.169.254', 'cloud_metadata'],
  ['::ffff:0:0.0.0.0', 'unspecified'],
  ['169.254.0.1', 'link_local'],
  ['169.254.255.255', 'link_local'],
  ['fe80::1', 'link_local'],
  ['fe80::1%eth0', 'link_local'], // with a zone, as the resolver may answer a link-local address
  ['FE80::1', 'link_local'],
  ['febf:ffff::1', 'link_local'],
  ['::ffff:169.254.1.1', 'link_local'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['::', 'unspecified'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['64:ff9b::0.0.0.0', 'unspecified'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['ff02::1', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'reserved'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'tunnelled'], // Teredo
]

const ALLOWED: readonly string[] = [
  '127.0.0.1',
  '127.255.0.1',
  '::1',
  '10.0.0.1',
  '172.16.5.4',
  '192.168.1.1',
  '100.64.0.1', // carrier-grade NAT: private networks use it
  '169.253.255.255',
  '169.255.0.0',
  '223.255.255.255',
  '8.8.8.8',
  '2001:4860:4860::8888',
  '2001:1::1', // just past Teredo's /32
  'fd12:3456::1', // unique local: private
  'fec0::1', // just past link-local's /10
  '::ffff:10.0.0.1',
  '64:ff9b::808:808', // NAT64 of a public address
  '2002:808:808::1', // 6to4 of a public address
  '::ffff:0:a00:1', // SIIT of a private address
]

describe('which addresses an upstream call may go to', () => {
  it.each(REFUSED)('%s is refused as %s', (ip, kind) => {
    expect(refusedAddressKind(ip)).toBe(kind)
  })

  it.each(ALLOWED)('%s is allowed', (ip) => {
    expect(refusedAddressKind(ip)).toBeNull()
  })

  it('a name is not an address: it is judged when it resolves', () => {
    expect(refusedAddressKind('metadata.google.internal')).toBeNull()
    expect(hostAddress('metadata.google.internal')).toBeNull()
  })

  // The URL parser reads these as the address the connection will use; the string is never judged.
  it.each([
    ['http://169.254.169.254/', '169.254.169.254'],
    ['http://0xa9.0xfe.0xa9.0xfe/', '169.254.169.254'],
    ['http://2852039166/', '169.254.169.254'],
    ['http://0251.0376.0251.0376/', '169.254.169.254'],
    ['http://169.254.43518/', '169.254.169.254'],
    ['http://１６９.２５４.１６９.２５４/', '169.254.169.254'], // fullwidth digits
    ['http://[::ffff:169.254.169.254]/', '::ffff:a9fe:a9fe'],
    ['http://[fd00:ec2:0:0:0:0:0:254]/', 'fd00:ec2::254'],
    ['http://0/', '0.0.0.0'],
    ['http://0.0.0.0:8080/', '0.0.0.0'],
    ['http://[::]/', '::'],
  ])('%s is read as %s, and refused', (url, address) => {
    expect(hostAddress(new URL(url).hostname)).toBe(address)
    expect(refusedAddressKind(address)).not.toBeNull()
  })
})

describe('a connector whose upstream is a refused address', () => {
  const issues = (upstream: string): string[] => {
    const reader = new YamlReader(
      'connectors.yaml',
      `connectors:\n  - id: records\n    owner: qa\n    upstream: ${upstream}\n    certified_until: 2099-01-01\n    actions:\n      - { name: items.list, method: GET, path: /items, risk: read }\n`,
    )
    readConnectorCatalog(reader)
    return reader.issues.map((i) => `${i.line}:${i.message}`)
  }

  it('is refused when the file is read, at its line, naming the kind', () => {
    expect(issues('http://169.254.169.254/latest')).toEqual([
      '4:connectors[0].upstream is an address Corridor never connects to (169.254.169.254: cloud_metadata)',
    ])
    expect(issues('http://2852039166')).toEqual([
      '4:connectors[0].upstream is an address Corridor never connects to (169.254.169.254: cloud_metadata)',
    ])
    expect(issues('https://[::ffff:169.254.1.1]:8443')).toEqual([
      '4:connectors[0].upstream is an address Corridor never connects to (::ffff:a9fe:101: link_local)',
    ])
    expect(issues('http://0.0.0.0:9000')).toEqual([
      '4:connectors[0].upstream is an address Corridor never connects to (0.0.0.0: unspecified)',
    ])
  })

  it('private, loopback and named hosts load', () => {
    expect(issues('http://10.1.2.3:8080')).toEqual([])
    expect(issues('http://127.0.0.1:9000')).toEqual([])
    expect(issues('http://[::1]:9000')).toEqual([])
    expect(issues('https://records.internal')).toEqual([])
  })
})

/** The lookup's answer, as net.connect would receive it. */
function lookUp(
  resolve: ResolveAll,
  hostname: string,
  all: boolean,
): Promise<{ err: Error | null; address: unknown; family: unknown }> {
  return new Promise((done) => {
    checkedLookup(resolve)(hostname, { all, family: 0 }, (err, address, family) => done({ err, address, family }))
  })
}

describe('the lookup every upstream connection makes', () => {
  const table: Record<string, readonly string[]> = {
    'records.internal': ['10.0.0.7', 'fd12::7'],
    'rebound.example': ['93.184.215.14', '169.254.169.254'],
    'mapped.example': ['::ffff:169.254.169.254'],
    'zero.example': ['0.0.0.0'],
  }
  const resolve = tableResolver((h) => table[h] ?? null)

  it('passes on what an allowed name resolves to, one address or all of them', async () => {
    expect(await lookUp(resolve, 'records.internal', false)).toEqual({ err: null, address: '10.0.0.7', family: 4 })
    expect(await lookUp(resolve, 'records.internal', true)).toEqual({
      err: null,
      address: [
        { address: '10.0.0.7', family: 4 },
        { address: 'fd12::7', family: 6 },
      ],
      family: undefined,
    })
    // It asks the resolver for every answer, whatever the connection asked for, so that every one is judged.
    expect(resolve.asked.every((o) => o.all)).toBe(true)
  })

  it('refuses a name when any of its answers is refused, naming the address and its kind', async () => {
    for (const [name, address, kind] of [
      ['rebound.example', '169.254.169.254', 'cloud_metadata'],
      ['mapped.example', '::ffff:169.254.169.254', 'cloud_metadata'],
      ['zero.example', '0.0.0.0', 'unspecified'],
    ] as const) {
      for (const all of [false, true]) {
        const { err } = await lookUp(resolve, name, all)
        expect(err).toBeInstanceOf(AddressRefused)
        expect((err as AddressRefused).kind).toBe(kind)
        expect(err?.message).toBe(`'${name}' resolved to ${address} (${kind}), an address Corridor never connects to`)
      }
    }
  })

  it("passes the resolver's failure on as it is", async () => {
    const { err } = await lookUp(resolve, 'nowhere.example', true)
    expect((err as NodeJS.ErrnoException).code).toBe('ENOTFOUND')
  })
})
