/**
 * The extra headers of an OTLP export, read from an environment variable in the format of
 * OTEL_EXPORTER_OTLP_HEADERS. The text is a credential: a malformed one stops Corridor's start
 * with an error that names the setting and the pair, never the text.
 */
import { expect, it } from 'vitest'
import { otlpHeadersFrom } from '../../src/shared/otlp-headers.ts'

const SECRET = 'canary-5d1e'
const read = (text: string | undefined) =>
  otlpHeadersFrom('COLLECTOR_HEADERS', { COLLECTOR_HEADERS: text }, 'telemetry.traces')

it('reads name=value pairs, names lower-cased, values trimmed and percent-decoded', () => {
  expect(read(` Authorization=Basic%20${SECRET} , x-scope=team%2Ca,, dd-api-key = k=v `)).toEqual({
    authorization: `Basic ${SECRET}`,
    'x-scope': 'team,a',
    'dd-api-key': 'k=v',
  })
  expect(otlpHeadersFrom(null, {}, 'audit.otlp')).toEqual({})
})

it('a variable that is named and not set stops the start, rather than exporting without the key', () => {
  expect(() => read(undefined)).toThrow('telemetry.traces.headers_env names COLLECTOR_HEADERS, which is not set')
  expect(() => read('  ')).toThrow('which is not set')
})

it.each([
  [`authorization Bearer ${SECRET}`, 'pair 1 of 1 is not name=value'],
  [`x-ok=1,bad name=${SECRET}`, 'pair 2 of 2 has a name that is not an HTTP header name'],
  [`=${SECRET}`, 'pair 1 of 1 has a name that is not an HTTP header name'],
  [`content-type=text/plain;${SECRET}`, 'sets content-type, which the exporter sets itself'],
  [`Host=${SECRET}`, 'sets host, which the exporter sets itself'],
  [`authorization=${SECRET}%0D%0Ax-injected:1`, 'pair 1 of 1 has a value with a line break or NUL'],
  [`authorization=${SECRET}%zz`, 'pair 1 of 1 has a value that is not valid percent-encoding'],
])('refuses %j, and the error does not repeat the text', (text, message) => {
  let error: Error | null = null
  try {
    read(text)
  } catch (err) {
    error = err as Error
  }
  expect(error?.message).toContain(message)
  expect(error?.message).toContain('telemetry.traces.headers_env names COLLECTOR_HEADERS')
  expect(error?.message).not.toContain(SECRET)
})
