/**
 * Tells people that a request waits for them, and what became of it: one POST per event with a
 * Slack-compatible body (`text` plus mrkdwn `blocks`), so an incoming-webhook URL works as is.
 * The summary names who, which action, the intent and a few top-level body fields; fields whose
 * names suggest secrets are masked, and headers are never included. Delivery is best effort and
 * bounded: a slow or failing webhook never delays a hold or a decision.
 */
import { Agent, request } from 'undici'
import { checkedLookup, type ResolveAll } from '../shared/checked-lookup.ts'
import type { Logger } from '../shared/logger.ts'
import type { Approval } from './approval.ts'

import type { ApprovalEvent } from '../audit/record.ts'

export type { ApprovalEvent }

export interface ApprovalNotifier {
  notify(event: ApprovalEvent, approval: Approval): void
}

const SENSITIVE = /pass|secret|token|key|auth|card|cvc|cvv|iban|ssn|account_number|pin/i
const MAX_FIELDS = 8
const MAX_VALUE = 80

export class WebhookNotifier implements ApprovalNotifier {
  readonly #url: string
  readonly #timeoutMs: number
  readonly #log: Logger

  readonly #dispatcher: Agent

  /** `resolve`: how the webhook's host is resolved (the system's resolver unless a test stands in); every answer is judged. */
  constructor(url: string, timeoutMs: number, log: Logger, resolve?: ResolveAll) {
    this.#url = url
    this.#timeoutMs = timeoutMs
    this.#log = log
    this.#dispatcher = new Agent({ connect: { lookup: checkedLookup(resolve) } })
  }

  notify(event: ApprovalEvent, approval: Approval): void {
    const text = summarise(event, approval)
    const payload = JSON.stringify({
      text,
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }],
      corridor: { event, approval_id: approval.held.id, state: approval.state },
    })
    request(this.#url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: payload,
      signal: AbortSignal.timeout(this.#timeoutMs),
      dispatcher: this.#dispatcher,
    })
      .then(async (res) => {
        await res.body.dump()
        if (res.statusCode >= 300)
          this.#log.warn(
            { status: res.statusCode, event, approvalId: approval.held.id },
            'approval webhook refused the notification',
          )
      })
      // The URL itself is often a secret (Slack puts the token in the path): log the failure, never the URL.
      .catch((err: unknown) =>
        this.#log.warn({ err, event, approvalId: approval.held.id }, 'approval webhook could not be notified'),
      )
  }
}

export function summarise(event: ApprovalEvent, approval: Approval): string {
  const h = approval.held
  const who = `*${h.agent}* (owner ${h.owner}${h.user !== null ? `, acting for ${h.user}` : ''})`
  const what = `\`${h.connector}.${h.action ?? '?'}\` — ${h.request.method} ${h.request.target}`
  const lines: string[] = []
  switch (event) {
    case 'held':
      lines.push(`:hourglass: ${who} asks to run ${what}`)
      lines.push(
        `Needs ${h.required} approval${h.required > 1 ? 's' : ''} from ${h.approverGroups.join(' or ')} before ${new Date(h.expiresAt).toISOString()} — ${h.reason}`,
      )
      break
    case 'approval_recorded':
      lines.push(
        `:ballot_box_with_check: ${lastApprover(approval)} approved ${what} (1 of ${h.required}); one more approver needed`,
      )
      break
    case 'approved':
      lines.push(
        `:white_check_mark: ${what} from ${who} approved by ${approval.approvals.map((d) => `${d.approver} ("${d.reason}")`).join(' and ')}`,
      )
      break
    case 'rejected':
      lines.push(
        `:no_entry: ${what} from ${who} rejected by ${approval.rejection?.approver ?? '?'}: "${approval.rejection?.reason ?? ''}"`,
      )
      break
    case 'expired':
      lines.push(`:alarm_clock: ${what} from ${who} expired undecided`)
      break
    case 'cancelled':
      lines.push(`:x: ${what} from ${who} cancelled: ${approval.cancelReason ?? ''}`)
      break
    case 'executed':
      lines.push(
        `:arrow_forward: ${what} from ${who} ran: upstream answered ${approval.result?.status ?? '?'}${approval.result?.errorCode ? ` (${approval.result.errorCode})` : ''}`,
      )
      break
    case 'unknown':
      lines.push(
        `:warning: ${what} from ${who} was approved, but Corridor lost track of it mid-forward; it was sent at most once and will not be retried`,
      )
      break
  }
  if (h.intent !== null) lines.push(`Intent: ${h.intent}`)
  const fields = bodyFields(approval)
  if (fields !== '') lines.push(`Body: ${fields}`)
  lines.push(`Approval \`${h.id}\` · digest \`${h.digest.slice(0, 19)}…\``)
  return lines.join('\n')
}

function lastApprover(approval: Approval): string {
  return approval.approvals.at(-1)?.approver ?? '?'
}

function bodyFields(approval: Approval): string {
  const raw = Buffer.from(approval.held.request.bodyBase64, 'base64').toString('utf8')
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    parsed = Object.fromEntries(new URLSearchParams(raw))
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return ''
  const parts: string[] = []
  for (const [name, value] of Object.entries(parsed)) {
    if (parts.length >= MAX_FIELDS) break
    if (value !== null && typeof value === 'object') continue
    const shown = SENSITIVE.test(name) ? '•••' : String(value).slice(0, MAX_VALUE)
    parts.push(`${name}=${shown}`)
  }
  return parts.join(', ')
}
