/** The agent went away (closed its connection) before Corridor finished with its request. */
export class ClientAbortedError extends Error {
  override name = 'ClientAbortedError'
}
