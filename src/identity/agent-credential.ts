/**
 * Finds the agent's Corridor credential where SDKs put an API key: `Authorization: Bearer`,
 * `Authorization: token` (GitHub clients), `Authorization: Basic` (the password, or the user
 * name when the password is empty, as Stripe's curl examples do), or a header the connector
 * names (x-api-key and the like). Two different credentials in one request are refused.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { CorridorError } from '../shared/errors.ts'

export function extractAgentCredential(headers: IncomingHttpHeaders, keyHeader: string | null): string | null {
  const found: string[] = []
  const authorization = headers.authorization
  if (authorization !== undefined) found.push(fromAuthorization(authorization))
  if (keyHeader !== null) {
    const value = headers[keyHeader]
    if (typeof value === 'string' && value !== '') found.push(value.trim())
  }
  if (found.length === 0) return null
  if (found.length > 1 && found.some((c) => c !== found[0])) {
    throw new CorridorError('identity_invalid', 'the request carries two different agent credentials')
  }
  return found[0] as string
}

function fromAuthorization(value: string): string {
  const space = value.indexOf(' ')
  const scheme = space === -1 ? '' : value.slice(0, space).toLowerCase()
  const rest = space === -1 ? '' : value.slice(space + 1).trim()
  if ((scheme === 'bearer' || scheme === 'token') && rest !== '') return rest
  if (scheme === 'basic' && rest !== '') {
    const decoded = Buffer.from(rest, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon !== -1) {
      const user = decoded.slice(0, colon)
      const password = decoded.slice(colon + 1)
      const credential = password !== '' ? password : user
      if (credential !== '') return credential
    }
  }
  if (scheme === 'aws4-hmac-sha256')
    // The request is signed with an AWS key the agent must not hold; verifying and re-signing is not supported.
    throw new CorridorError(
      'identity_invalid',
      'AWS Signature Version 4 requests are not brokered: Corridor cannot verify or re-sign them; send the Corridor agent key as a Bearer token',
    )
  throw new CorridorError('identity_invalid', 'unsupported Authorization scheme (use Bearer, token or Basic)')
}
