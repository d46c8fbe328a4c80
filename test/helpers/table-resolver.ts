/**
 * A stand-in for DNS: answers each name from `answer` (null: no such name), and keeps the options
 * it was asked with. Corridor's own checks run on whatever it answers, as on the system resolver's.
 */
import type { LookupAddress, LookupAllOptions } from 'node:dns'
import type { ResolveAll } from '../../src/shared/checked-lookup.ts'

export function tableResolver(
  answer: (hostname: string) => readonly string[] | null,
): ResolveAll & { readonly asked: LookupAllOptions[] } {
  const asked: LookupAllOptions[] = []
  const resolve = (
    hostname: string,
    options: LookupAllOptions,
    cb: (e: NodeJS.ErrnoException | null, a: LookupAddress[]) => void,
  ): void => {
    asked.push(options)
    const found = answer(hostname)
    if (found === null)
      return cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])
    cb(
      null,
      found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    )
  }
  return Object.assign(resolve, { asked })
}
