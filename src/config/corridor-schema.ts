/** The format of corridor.yaml: the static configuration read once at start. */
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
} from './schema-types.ts'
import { IN_CLEAR } from '../shared/in-clear.ts'
import { REQUEST_OUTCOMES } from '../shared/outcomes.ts'

export const JWT_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
  'Ed25519',
] as const

const serverTls = (what: string) =>
  strict(
    {
      cert_file: text().describe('Server certificate chain (PEM), relative to this file'),
      key_file: text().describe('Its private key (PEM)'),
    },
    what,
  )

const issuerShape = {
  issuer: text().describe('Expected `iss` claim'),
  audience: text().describe('Expected `aud` claim'),
  algorithms: oneOrMoreOf(JWT_ALGORITHMS).describe('Accepted signature algorithms (asymmetric only)'),
  jwks_url: text().optional().describe('Where the issuer publishes its keys (give this or jwks_file)'),
  jwks_file: text().optional().describe('A local JWKS file, relative to corridor.yaml (give this or jwks_url)'),
  clock_skew: duration().optional().describe('Tolerated clock difference, at most 60s (default 30s)'),
  max_token_age: duration().optional().describe('Refuse tokens issued longer ago than this'),
  plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.jwks),
}

const valueSource = {
  url: text().optional(),
  url_env: text().optional().describe('Name of the environment variable holding the URL (for URLs with passwords)'),
}

const redisInClear = { plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.redis) }

/** An OTLP export's settings that say where it goes and with what. */
const otlpEndpoint = {
  endpoint: text().describe("The collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318"),
  headers_env: text()
    .optional()
    .describe(
      'An environment variable holding extra headers as name=value,name=value, values percent-decoded (an API key)',
    ),
  plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.otlp),
}

const vaultAuth = z.discriminatedUnion('method', [
  strict({
    method: z.literal('token'),
    token_env: text().optional(),
    token_file: text().optional(),
  }),
  strict({
    method: z.literal('approle'),
    mount: text().optional(),
    role_id: text(),
    secret_id_env: text().optional(),
    secret_id_file: text().optional(),
  }),
  strict({
    method: z.enum(['jwt', 'kubernetes']),
    mount: text().optional(),
    role: text(),
    jwt_env: text().optional(),
    jwt_file: text().optional(),
  }),
])

export const corridorFileSchema = strict(
  {
    listen: strict(
      {
        host: text().optional().describe('Interface to listen on (default 127.0.0.1)'),
        port: wholeNumber(0, 65_535).optional().describe('TCP port (0: any free port)'),
        tls: serverTls(
          'Serve agents over HTTPS (TLS 1.2+); the files are read again when they change, so renewed certificates apply without a restart',
        ).optional(),
      },
      'The agent listener (default 127.0.0.1:8080)',
    ).optional(),
    admin: strict(
      {
        host: text().optional().describe('Interface to listen on (default 127.0.0.1)'),
        port: wholeNumber(0, 65_535).optional().describe('TCP port (0: any free port)'),
        tls: strict(
          {
            ...serverTls('').shape,
            client_ca_file: text().optional().describe('Require client certificates issued by this CA (mutual TLS)'),
          },
          'Serve the admin listener over HTTPS (required beyond loopback)',
        ).optional(),
        plaintext_beyond_loopback: z
          .boolean()
          .optional()
          .describe('Allow plain HTTP on a non-loopback interface (approver keys would cross the network in clear)'),
      },
      'The admin and approvals listener (default 127.0.0.1:8081)',
    ).optional(),
    files: strict(
      {
        agents: text().describe('agents.yaml, relative to this file'),
        connectors: text().describe('connectors.yaml, relative to this file'),
        policy: text().describe('policy.yaml, relative to this file'),
      },
      'The policy bundle',
    ),
    audit: strict({
      file: text().describe('Audit log (JSON lines, hash-chained), relative to this file'),
      signing_key_file: text()
        .optional()
        .describe('Ed25519 private key (PKCS#8 PEM) that signs the checkpoints; publish its public key for verifiers'),
      signing_transit: strict(
        {
          mount: text().optional().describe('Where the transit engine is mounted (default transit)'),
          key: text().describe('The ed25519 transit key that signs checkpoints'),
        },
        "Sign checkpoints with an ed25519 key in Vault's transit engine (through `vault:`), so the key never sits on Corridor's host; instead of signing_key_file",
      ).optional(),
      checkpoint_entries: wholeNumber(100, 10_000_000)
        .optional()
        .describe(
          'Also write a checkpoint every this many entries (besides every minute), bounding what a range verification reads; default: every minute only',
        ),
      rotate: strict(
        {
          max_bytes: bytes().optional().describe('Rotate the live file when it reaches this size'),
          max_age: duration().optional().describe('Rotate the live file when it is this old'),
        },
        'Rotation: the live file is renamed to <file>.<UTC time> and the chain continues in a new one (with workers, each worker rotates its own file, <file>.worker-<N>)',
      ).optional(),
      retain: duration()
        .optional()
        .describe(
          'Delete rotated files older than this (never one a configured shipper has not shipped); at least retain_floor when nothing ships the trail; default: keep',
        ),
      retain_floor: duration()
        .optional()
        .describe(
          'The shortest retain accepted when nothing ships the trail, so the files are its only copy (default 180d: record-keeping rules such as the EU AI Act ask for at least six months); lower it only where none applies',
        ),
      postgres: strict(
        {
          ...valueSource,
          plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.postgres),
          table: z
            .string()
            .regex(/^[a-z_][a-z0-9_]{0,62}$/, { error: 'must be a plain lower-case table name' })
            .optional()
            .describe('Default corridor_audit'),
          batch: wholeNumber(1, 10_000).optional().describe('Entries per insert (default 500)'),
          poll: duration().optional().describe('How often the audit file is looked at for new entries (default 200ms)'),
          timeout: duration().optional().describe('Bound on connecting and on each statement (default 5s)'),
        },
        'Ship every entry to PostgreSQL, where queries see every replica',
      ).optional(),
      otlp: strict(
        {
          ...otlpEndpoint,
          poll: duration().optional().describe('How often the audit file is looked at for new entries (default 200ms)'),
          timeout: duration().optional().describe('Bound on each export (default 5s)'),
        },
        'Ship every entry to an OpenTelemetry collector as OTLP logs (the line as written is the body)',
      ).optional(),
    }),
    identity: strict({
      agent_jwt: strict(issuerShape, 'Agents may present JWTs from this issuer').optional(),
      user_jwt: strict(
        {
          ...issuerShape,
          header: text().optional().describe('Header carrying the user token; must start with x-corridor-'),
          groups_claim: text().optional(),
        },
        'Delegated user tokens',
      ).optional(),
      approver_jwt: strict(
        {
          ...issuerShape,
          groups_claim: text().optional(),
          id_claim: text().optional().describe('Claim naming the approver in the audit trail (default sub)'),
          operator_groups: textList()
            .optional()
            .describe('Groups whose members may also stop and resume agents (corridor stop) with their IdP token'),
          auditor_groups: textList()
            .optional()
            .describe('Groups whose members may read the audit trail on the admin API with their IdP token'),
        },
        'Approvers (and operators) signing in through the identity provider',
      ).optional(),
    }).optional(),
    limits: strict({
      max_headers: wholeNumber(1, 10_000).optional(),
      max_header_bytes: bytes().optional(),
      headers_timeout: duration().optional(),
      request_timeout: duration().optional(),
      keep_alive_timeout: duration().optional(),
      max_connections: wholeNumber(1, 1_000_000)
        .optional()
        .describe('Agent-listener connections at once, in total (default 8192)'),
      max_connections_per_client: wholeNumber(1, 1_000_000)
        .optional()
        .describe('Agent-listener connections at once from one client address (default 512)'),
    }).optional(),
    shutdown: strict(
      {
        grace: duration()
          .optional()
          .describe('How long requests and releases in flight may take to finish after SIGTERM (default 20s)'),
        delay: duration()
          .optional()
          .describe(
            'How long readiness reports draining before the listener stops accepting, for load balancers to notice (default 0s)',
          ),
      },
      'Graceful shutdown: readiness fails, then the listener closes, then what is in flight finishes',
    ).optional(),
    watch_policy: z.boolean().optional().describe('Reload the policy bundle when its files change (default true)'),
    workers: z
      .union([z.literal('auto'), z.int().min(1).max(64)], {
        error: `must be 'auto' or a whole number from 1 to 64`,
      })
      .optional()
      .describe(
        'Processes serving the listeners: a number, or auto for one per CPU; more than one needs approvals.redis; each worker writes its own audit file, <audit.file>.worker-<N>',
      ),
    vault: strict({
      address: text().describe('https://vault.internal:8200'),
      namespace: text().optional(),
      timeout: duration().optional().describe('Bound on each Vault call, 100ms to 30s (default 2.5s)'),
      ca_file: text().optional(),
      auth: vaultAuth,
      plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.vault),
    }).optional(),
    telemetry: strict(
      {
        metrics: z
          .boolean()
          .optional()
          .describe('Serve Prometheus metrics at /metrics on the admin listener (default true)'),
        traces: strict({
          ...otlpEndpoint,
          timeout: duration().optional().describe('Bound on each export (default 5s)'),
          sample: z
            .number()
            .min(0)
            .max(1)
            .optional()
            .describe(
              "Share of new traces recorded, 0 to 1 (default 1); an agent's traceparent keeps its own sampling decision unless follow_agent_sampling is false; always_record records more",
            ),
          follow_agent_sampling: z
            .boolean()
            .optional()
            .describe(
              'Record a request whose traceparent says the agent recorded it (default true); false: the share in sample decides every request, so an agent cannot have all of its requests recorded',
            ),
          always_record: strict(
            {
              outcomes: oneOrMoreOf(REQUEST_OUTCOMES)
                .optional()
                .describe(
                  'Every request that ends in one of these outcomes, e.g. [denied, held, rejected, unavailable, upstream_error, upstream_timeout] (default: none). held also records the release of every hold, sampled so that its upstream records it too',
                ),
              errors: z
                .boolean()
                .optional()
                .describe('Every request answered 5xx or not at all, by Corridor or the upstream (default false)'),
              slower_than: duration()
                .optional()
                .describe('Every request that takes at least this long (default: none)'),
            },
            'Requests recorded whatever their sampling decision, chosen when they end; their upstream was told the sampling decision, so it records its own spans only when sampled',
          ).optional(),
        })
          .optional()
          .describe(
            'OpenTelemetry traces (off unless given): W3C traceparent in and out, spans exported as OTLP/HTTP JSON',
          ),
      },
      'Metrics and traces',
    ).optional(),
    state: strict(
      {
        redis: strict({
          ...valueSource,
          ...redisInClear,
          key_prefix: text().optional(),
          timeout: duration().optional().describe('Bound on each Redis command, 50ms to 1s (default 500ms)'),
        })
          .optional()
          .describe('Where stops and limit counters are shared by replicas (default: the approvals Redis, if any)'),
        stops_file: text()
          .optional()
          .describe(
            'Without Redis: the file stops are kept in across restarts (default: corridor-stops.json beside the audit file)',
          ),
        stale_after: duration()
          .optional()
          .describe('How old the stops may be, when Redis cannot be read, before writes are refused (default 5s)'),
      },
      'Runtime controls: operator stops and limit counters',
    ).optional(),
    approvals: strict({
      redis: strict({
        ...valueSource,
        ...redisInClear,
        key_prefix: text().optional(),
        timeout: duration().optional().describe('Bound on each Redis command, 50ms to 1s (default 500ms)'),
        without_persistence: oneOf(['warn', 'refuse'])
          .optional()
          .describe('When Redis keeps no append-only file: warn (default), or refuse holds until it does'),
      }).optional(),
      wait: duration().optional().describe('How long a held call waits for a decision, at most 55s (default 25s)'),
      expires_after: duration().optional(),
      keep_results: duration().optional(),
      retry_window: duration()
        .optional()
        .describe(
          'How long after it ran a repeat of the same held request gets its result instead of a new hold (default 10m; 0: never)',
        ),
      max_held_connections: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional(),
      max_pending: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional(),
      max_pending_per_agent: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional(),
      execution_timeout: duration().optional(),
      max_response_bytes: bytes().optional(),
      webhook: strict({
        ...valueSource,
        timeout: duration().optional(),
        plaintext_beyond_loopback: plaintextBeyondLoopback(IN_CLEAR.webhook),
      }).optional(),
    }).optional(),
  },
  'corridor.yaml: listeners, files, audit, identity, limits, Vault and approvals',
)

export type CorridorFile = z.output<typeof corridorFileSchema>
export type IssuerFields = z.output<z.ZodObject<typeof issuerShape>>
