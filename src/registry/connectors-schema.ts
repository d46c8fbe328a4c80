/** The format of connectors.yaml: the systems of record Corridor fronts and the actions each declares. */
import * as z from 'zod'
import {
  bytes,
  duration,
  oneOf,
  oneOrMoreOf,
  plaintextBeyondLoopback,
  strict,
  text,
  textList,
  wholeNumber,
} from '../config/schema-types.ts'
import { IN_CLEAR } from '../shared/in-clear.ts'
import { COST_CLASSES, RISKS } from './risk.ts'

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const
export const UPSTREAM_QUIRKS = ['method_override', 'matrix_params', 'body_on_get'] as const
export const BATCH_FORMAT_NAMES = ['graph', 'salesforce_composite'] as const
/** Statuses a held call may be answered with: 503 (default) and 429 are retried by most SDKs; 202 only for clients that know Corridor. */
export const HOLD_STATUSES = [503, 429, 409, 423, 202] as const
export type HoldStatus = (typeof HOLD_STATUSES)[number]

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const headerName = () => z.string().regex(HEADER_NAME, { error: 'must be a valid header name' })

/** Vault paths: segments of letters, digits and _.-, no leading slash, no '.' or '..' segments. */
const VAULT_PATH = /^(?!\.{1,2}(?:\/|$))[A-Za-z0-9_.-]+(?:\/(?!\.{1,2}(?:\/|$))[A-Za-z0-9_.@+=:-]+)*$/
const vaultPath = () =>
  z.string().regex(VAULT_PATH, {
    error: "must be a Vault path: segments of letters, digits and _.-, no leading slash, no '.' or '..' segments",
  })

const kvFields = {
  mount: vaultPath().describe('The KV v2 mount, e.g. secret'),
  path: vaultPath(),
  version: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional().describe('Pin a version (default: the latest)'),
  cache: duration().optional().describe('How long a read value is reused (default 60s)'),
}

const secretInput = strict(
  {
    env: text().optional().describe('Environment variable holding the secret'),
    file: text().optional().describe('File holding the secret, relative to connectors.yaml'),
    vault_kv: strict({ ...kvFields, field: text() }).optional(),
  },
  'Exactly one of env, file or vault_kv',
)

const scope = oneOf(['connector', 'agent'])
  .optional()
  .describe('connector: one credential shared by all agents; agent: one per agent (default connector)')
const refresh = z
  .boolean()
  .optional()
  .describe('On a 401/403 from the upstream, drop the cached credential so the next request gets a fresh one')

const template = () => text().describe("Text with field placeholders such as 'Bearer {secret}'")

const inject = strict(
  {
    header: headerName().optional().describe('Header the credential is placed in'),
    format: template().optional().describe("Value template for header or query (default '{secret}')"),
    basic: strict({
      username: z.string().describe("Text with field placeholders such as '{username}' (may be empty)"),
      password: z.string().describe("Text with field placeholders such as '{secret}' (may be empty)"),
    }).optional(),
    query: text().optional().describe('Query parameter the credential is placed in'),
  },
  'Where the credential goes: exactly one of header, basic or query',
)

const credential = z.discriminatedUnion('source', [
  strict({ source: z.literal('env'), inject, env: text().describe('Environment variable holding the secret') }),
  strict({
    source: z.literal('file'),
    inject,
    file: text().describe('File holding the secret, relative to connectors.yaml'),
    cache: duration().optional(),
  }),
  strict({ source: z.literal('vault_kv'), inject, ...kvFields, field: text().optional() }),
  strict({
    source: z.literal('vault_dynamic'),
    inject,
    path: vaultPath().describe('A secrets engine path that issues credentials, e.g. database/creds/readonly'),
    method: oneOf(['GET', 'POST']).optional(),
    params: z.record(z.string(), z.unknown()).optional().describe('Body sent with method: POST'),
    field: text().optional(),
    scope,
    refresh_on_reject: refresh,
  }),
  strict({
    source: z.literal('vault_token'),
    inject,
    role: vaultPath().optional(),
    policies: textList(),
    ttl: duration(),
    num_uses: wholeNumber(0, 1_000_000).optional(),
    scope,
    refresh_on_reject: refresh,
  }),
  strict({ source: z.literal('vault_identity'), inject, role: vaultPath(), scope, refresh_on_reject: refresh }),
  strict({
    source: z.literal('oauth2'),
    inject,
    token_url: text(),
    client_id: text(),
    client_secret: secretInput,
    scopes: textList().optional(),
    audience: text().optional(),
    auth_method: oneOf(['basic', 'post']).optional(),
    refresh_on_reject: refresh,
  }),
])

const action = strict({
  name: text().describe('Referenced by policy rules as match.actions'),
  method: oneOf(METHODS).optional(),
  path: text().optional().describe('Path template below the upstream base, e.g. /repos/{owner}/{repo}/issues'),
  risk: oneOf(RISKS),
  cost: oneOf(COST_CLASSES)
    .optional()
    .describe(
      'What running it costs: low, medium or high (rules match it with match.cost); undeclared matches no cost condition',
    ),
  description: text().optional(),
  lease: oneOf(['per_request', 'shared'])
    .optional()
    .describe('per_request: a credential minted for this request alone, revoked when it ends'),
  batch: strict({
    format: oneOf(BATCH_FORMAT_NAMES),
    url_prefix: text().optional().describe('A prefix every sub-request URL carries (Salesforce: /services/data/v60.0)'),
  })
    .optional()
    .describe('A batch endpoint: each sub-request is decided as the action it maps to'),
  graphql: z.boolean().optional().describe('A GraphQL endpoint: each root field is decided as its operation action'),
  graphql_field: z
    .string()
    .regex(/^(query|mutation|subscription)\.[_A-Za-z][_0-9A-Za-z]*$/, {
      error: 'must look like query.<field>, mutation.<field> or subscription.<field>',
    })
    .optional(),
})

export const connectorsFileSchema = strict(
  {
    connectors: z.array(
      strict({
        id: z.string().regex(/^[a-z][a-z0-9-]*$/, {
          error: "must be lower-case letters, digits and '-', starting with a letter",
        }),
        owner: text().describe('The team accountable for this connector'),
        description: text().optional(),
        upstream: text().describe('Base URL of the system of record, e.g. https://api.github.com'),
        hosts: textList().optional().describe('Host names routed to this connector (Host-based routing)'),
        certified_until: z
          .string()
          .regex(/^\d{4}-\d{2}-\d{2}$/, { error: 'must be a date (YYYY-MM-DD)' })
          .describe('After this date the connector is refused until it is reviewed again'),
        agent_key_header: headerName().optional().describe("A header the agents' SDKs put their key in"),
        strip_headers: textList().optional().describe('Headers removed from every request'),
        credential: credential.optional(),
        plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.upstream, IN_CLEAR.tokenUrl),
        limits: strict({
          max_body: bytes().optional(),
          max_json_depth: wholeNumber(1, 1_000).optional(),
        }).optional(),
        timeouts: strict({
          connect: duration().optional(),
          headers: duration().optional(),
          body: duration().optional(),
        }).optional(),
        actions: z.array(action),
        idempotency_header: headerName().optional().describe('The header the upstream honours idempotency keys in'),
        upstream_ignores: oneOrMoreOf(UPSTREAM_QUIRKS)
          .optional()
          .describe('Request shapes this upstream is known not to reinterpret'),
        agent_key_fields: textList().optional().describe("Query or form fields the agents' SDKs put their key in"),
        error_format: oneOf(['problem', 'slack', 'aws_xml', 'notion'])
          .optional()
          .describe(
            "How Corridor's refusals are shaped for this API's SDKs: problem (default; also carries error.message, message and errorMessages), slack ({ok: false, error} at 200), aws_xml (<Error><Code>), notion (Notion's own error codes)",
          ),
        hold_status: z
          .literal(HOLD_STATUSES, { error: `must be one of: ${HOLD_STATUSES.join(', ')}` })
          .optional()
          .describe(
            'The status of the answer to a held call (default 503 with Retry-After: an error every SDK raises, and most retry by themselves, joining the approval)',
          ),
        per_attempt_headers: textList()
          .optional()
          .describe(
            "Headers this API's SDKs set anew on every attempt (request ids): left out of a held request's digest",
          ),
      }),
    ),
  },
  'connectors.yaml: the systems of record and the actions each declares',
)

export type ConnectorsFile = z.output<typeof connectorsFileSchema>
export type ConnectorEntry = ConnectorsFile['connectors'][number]
export type CredentialEntry = NonNullable<ConnectorEntry['credential']>
export type InjectEntry = CredentialEntry['inject']
export type SecretInputEntry = z.output<typeof secretInput>
