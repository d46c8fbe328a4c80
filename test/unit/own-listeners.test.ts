/**
 * Which addresses lead back to Corridor's own listeners: by the address a listener is bound to
 * (every address, or one), always on its own port, in any spelling of the same IP.
 */
import { describe, expect, it } from 'vitest'
import { OwnListeners } from '../../src/forwarding/own-listeners.ts'

/** The host's interfaces as the tests stand them in: loopback, and one address of each family on eth0. */
const interfaces = () => ({
  lo: [{ address: '127.0.0.1' }, { address: '::1' }],
  eth0: [{ address: '10.1.2.3' }, { address: 'fd12:3456::7' }],
})

const listeners = (...listening: { address: string; port: number }[]): OwnListeners => {
  const own = new OwnListeners(interfaces)
  own.set(listening)
  return own
}

describe("Corridor's own listeners", () => {
  it('knows none before they are bound', () => {
    expect(new OwnListeners(interfaces).reaches('127.0.0.1', 8080)).toBe(false)
  })

  it("reads the host's own interfaces when none are stood in", () => {
    const own = new OwnListeners()
    own.set([{ address: '0.0.0.0', port: 8080 }])
    expect(own.reaches('127.0.0.1', 8080)).toBe(true)
  })

  it("a listener on every IPv4 address is reached through loopback and the host's own addresses, on its port only", () => {
    const own = listeners({ address: '0.0.0.0', port: 8080 })
    for (const address of ['127.0.0.1', '127.0.0.53', '::ffff:127.0.0.1', '::FFFF:127.0.0.1', '::ffff:7f00:1'])
      expect(own.reaches(address, 8080), address).toBe(true)
    expect(own.reaches('10.1.2.3', 8080)).toBe(true)
    expect(own.reaches('127.0.0.1', 8081)).toBe(false)
    // Another host, and IPv6 loopback (which an IPv4-only listener does not take).
    expect(own.reaches('10.255.255.254', 8080)).toBe(false)
    expect(own.reaches('::1', 8080)).toBe(false)
  })

  it('a listener on every address, IPv6 included, is reached through both loopbacks in any spelling', () => {
    const own = listeners({ address: '::', port: 9000 })
    for (const address of ['::1', '0:0:0:0:0:0:0:1', '127.0.0.1', '10.1.2.3', 'FD12:3456:0::7'])
      expect(own.reaches(address, 9000), address).toBe(true)
    expect(own.reaches('2001:db8::1', 9000)).toBe(false)
  })

  it('a listener bound to one address is reached through that address alone', () => {
    const own = listeners({ address: '127.0.0.1', port: 8080 }, { address: '::1', port: 8081 })
    expect(own.reaches('127.0.0.1', 8080)).toBe(true)
    expect(own.reaches('::ffff:127.0.0.1', 8080)).toBe(true)
    // Another loopback address is another socket: a sidecar there is not Corridor.
    expect(own.reaches('127.0.0.2', 8080)).toBe(false)
    expect(own.reaches('::1', 8081)).toBe(true)
    expect(own.reaches('0000:0000::0001', 8081)).toBe(true)
    expect(own.reaches('::1', 8080)).toBe(false)
    expect(own.reaches('127.0.0.1', 8081)).toBe(false)
  })
})
