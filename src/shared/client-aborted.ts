/** The agent went away (closed its connection) before Corridor finished with its request. */
export class ClientAbortedError extends Error {
  override name = 'ClientAbortedError'
  /** No answer is sent; the audit record's outcome says this. */
  readonly code = 'client_aborted'
}
