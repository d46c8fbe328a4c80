/**
 * `npm run demo`: starts the bundled system of record on 127.0.0.1:9090 and Corridor on its
 * embedded defaults (policies/corridor.yaml), then prints calls to try.
 */
import { fileURLToPath } from 'node:url'
import { loadServerConfig } from '../src/config/server-config.ts'
import { startCorridor } from '../src/main.ts'
import { createLogger } from '../src/shared/logger.ts'
import { startSystemOfRecord } from './system-of-record.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
/** A port in use (a Corridor left running by `npm start`) is one line, not a stack trace. */
function fail(err: unknown): never {
  const e = err as NodeJS.ErrnoException
  const why = e.code === 'EADDRINUSE' ? 'port 9090 is in use (a demo still running?)' : e.message
  process.stderr.write(`demo: ${why}; stop whatever holds the port, then run npm run demo again\n`)
  process.exit(1)
}
const sor = await startSystemOfRecord(9090, `${root}/examples/secrets/records-api.token`).catch(fail)
const config = loadServerConfig(`${root}/policies/corridor.yaml`)
const corridor = await startCorridor(config, { env: process.env, log: createLogger('warn') }).catch((err: unknown) => {
  sor.close()
  return fail(err)
})
process.stdout.write(`
Corridor is listening on ${corridor.agentUrl} (admin ${corridor.adminUrl}); the sample system of record on http://127.0.0.1:9090.

  # allowed: the support bot reads a customer (its Corridor key is swapped for the records API token)
  curl -s ${corridor.agentUrl}/records/customers/c-1 -H 'Authorization: Bearer cor_demo_support_bot'

  # denied, with the rule, the reason and the limiting factor
  curl -s -X DELETE ${corridor.agentUrl}/records/customers/c-1 -H 'Authorization: Bearer cor_demo_support_bot'

  # the audit records of both
  npm run corridor -- audit query --agent support-bot

Ctrl-C stops both.
`)
const stop = (): void => {
  sor.close()
  void corridor.close().then(() => process.exit(0))
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
