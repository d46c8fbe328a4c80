/**
 * How a request ended, as its audit record says. The configuration names them too: traces record
 * the requests that end in the outcomes it lists, whatever their sampling decision.
 */
export const REQUEST_OUTCOMES = [
  'forwarded', // the upstream answered and the response reached the agent
  'denied', // policy refused it
  'held', // policy requires approval
  'rejected', // malformed, unidentified or over a limit; policy was not reached
  'unavailable', // a dependency (credential source, audit sink, policy) could not do its part
  'upstream_error', // forwarded, but the upstream failed or sent something invalid
  'upstream_timeout',
  'client_aborted', // the agent went away before the response completed
  'stopped', // cut in flight by an operator stop
  'shutdown', // Corridor stopped before the response completed: its shutdown grace ran out
  'released', // the agent collected the result of its approved request (forwarded once, in its own record)
  'served', // Corridor answered it itself (the error reference); nothing was forwarded
] as const

export type RequestOutcome = (typeof REQUEST_OUTCOMES)[number]

/** A request's outcomes, and what a query shows for an intent entry with no record after it (Corridor stopped mid-action). */
export type Outcome = RequestOutcome | 'incomplete'
