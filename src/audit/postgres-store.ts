/**
 * The audit trail of every replica in one PostgreSQL table, for queries across replicas. Each
 * entry is stored as the exact line the replica wrote (so the hash chain verifies on the copy),
 * keyed by its stream and sequence number, so that shipping the same entry twice stores it once,
 * with the columns queries filter on beside it.
 */
import pg from 'pg'
import type { AuditFilter } from './query.ts'
import { CHECKPOINT_LINE_PREFIX } from './chain.ts'
import { shippedEntry, type ShippedEntry, type ShipTarget } from './shipper.ts'

/** Idempotent: creates the table and indexes, or leaves them as they are. */
function migrations(table: string): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${table} (
      stream text NOT NULL,
      seq bigint NOT NULL,
      type text NOT NULL,
      time timestamptz,
      request_id text,
      approval_id text,
      agent text,
      line text NOT NULL,
      shipped_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (stream, seq)
    )`,
    `CREATE INDEX IF NOT EXISTS ${table}_time ON ${table} (time)`,
    `CREATE INDEX IF NOT EXISTS ${table}_request ON ${table} (request_id) WHERE request_id IS NOT NULL`,
    `CREATE INDEX IF NOT EXISTS ${table}_approval ON ${table} (approval_id) WHERE approval_id IS NOT NULL`,
    `CREATE INDEX IF NOT EXISTS ${table}_agent_time ON ${table} (agent, time)`,
  ]
}

/** One stream's entries from a point, for verifying part of a long trail. */
export interface VerifyRange {
  readonly stream: string
  readonly fromSeq: number
  readonly toSeq?: number
}

interface StoredRow {
  readonly stream: string
  readonly seq: string
  readonly type: string
  readonly time: Date | null
  readonly request_id: string | null
  readonly approval_id: string | null
  readonly agent: string | null
  readonly line: string
}

/** The columns of a row that disagree with its line, or null. */
function columnProblem(row: StoredRow): string | null {
  const entry = shippedEntry(row.line)
  if (entry === null) return null // the chain verifier reports a line that is not an entry
  const wrong: string[] = []
  if (row.stream !== entry.stream) wrong.push('stream')
  if (row.seq !== String(entry.seq)) wrong.push('seq')
  if (row.type !== entry.type) wrong.push('type')
  if ((row.time?.getTime() ?? null) !== (entry.time === null ? null : Date.parse(entry.time))) wrong.push('time')
  if (row.request_id !== entry.requestId) wrong.push('request_id')
  if (row.approval_id !== entry.approvalId) wrong.push('approval_id')
  if (row.agent !== entry.agent) wrong.push('agent')
  return wrong.length === 0
    ? null
    : `the row's ${wrong.join(', ')} column(s) do not match its line (edited in the table)`
}

export interface PostgresAuditOptions {
  readonly url: string
  readonly table: string
  /** Bound on connecting and on each statement. */
  readonly timeoutMs: number
}

export class PostgresAuditStore implements ShipTarget {
  readonly name = 'postgres'
  readonly #pool: pg.Pool
  readonly #table: string

  constructor(options: PostgresAuditOptions) {
    assertPlainTable(options.table)
    this.#table = options.table
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: 2,
      connectionTimeoutMillis: options.timeoutMs,
      statement_timeout: options.timeoutMs,
      query_timeout: options.timeoutMs,
    })
    // An idle client whose server went away: the next query gets a fresh one.
    this.#pool.on('error', () => {})
  }

  #migrated = false

  async migrate(): Promise<void> {
    for (const statement of migrations(this.#table)) await this.#pool.query(statement)
    this.#migrated = true
  }

  /** Stores a batch; entries already stored (same stream and seq) are left alone. */
  async insert(entries: readonly ShippedEntry[]): Promise<number> {
    if (entries.length === 0) return 0
    if (!this.#migrated) await this.migrate()
    const result = await this.#pool.query(
      `INSERT INTO ${this.#table} (stream, seq, type, time, request_id, approval_id, agent, line)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[])
       ON CONFLICT (stream, seq) DO NOTHING`,
      [
        entries.map((e) => e.stream),
        entries.map((e) => e.seq),
        entries.map((e) => e.type),
        entries.map((e) => e.time),
        entries.map((e) => e.requestId),
        entries.map((e) => e.approvalId),
        entries.map((e) => e.agent),
        entries.map((e) => e.line),
      ],
    )
    return result.rowCount ?? 0
  }

  /**
   * The stored lines a query may need, in the order each replica wrote them (stream, then seq),
   * narrowed by the indexed columns; the caller applies the full filter. Read in pages.
   */
  async *lines(filter: AuditFilter): AsyncGenerator<string> {
    const where: string[] = []
    const params: unknown[] = []
    const add = (clause: string, value: unknown): void => {
      params.push(value)
      where.push(clause.replace('?', `$${params.length}`))
    }
    if (filter.requestId !== undefined) add('request_id = ?', filter.requestId)
    if (filter.approval !== undefined) add('approval_id = ?', filter.approval)
    if (filter.agent !== undefined) add('agent = ?', filter.agent)
    if (filter.since !== undefined) add('time >= ?', new Date(filter.since - 60_000).toISOString())
    if (filter.until !== undefined) add('time <= ?', new Date(filter.until + 60_000).toISOString())
    for await (const row of pages(this.#pool, this.#table, where, params)) yield row.line
  }

  /** The checkpoint entries of every stream, in order, as written (for a witness to keep a copy of). */
  async *checkpointLines(): AsyncGenerator<string> {
    // By the line, not the type column: a copy for a witness should not depend on a column that could be edited.
    for await (const row of pages(this.#pool, this.#table, ['line LIKE $1'], [`${CHECKPOINT_LINE_PREFIX}%`]))
      yield row.line
  }

  /** Per stream with an entry in the window, its first entry there (by sequence number). */
  async firstEntriesInWindow(since: number | undefined, until: number | undefined): Promise<Map<string, number>> {
    const where: string[] = []
    const params: string[] = []
    if (since !== undefined) where.push(`time >= $${params.push(new Date(since).toISOString())}`)
    if (until !== undefined) where.push(`time <= $${params.push(new Date(until).toISOString())}`)
    const rows = await this.#pool.query<{ stream: string; seq: string }>(
      `SELECT stream, min(seq) AS seq FROM ${this.#table}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} GROUP BY stream ORDER BY stream`,
      params,
    )
    return new Map(rows.rows.map((r) => [r.stream, Number(r.seq)]))
  }

  /** Every stored row in chain order, with what its columns say that its line does not (see verificationRows). */
  verificationRows(range?: VerifyRange): AsyncGenerator<{ line: string; problem: string | null }> {
    return verificationRows(this.#pool, this.#table, range)
  }

  close(): Promise<void> {
    return this.#pool.end()
  }
}

/** Table names are written into statements, so they are plain identifiers only. */
function assertPlainTable(table: string): void {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) throw new Error(`not a plain table name: '${table}'`)
}

/** Something to run queries on: the store's pool, or a client inside a transaction. */
type Queryable = Pick<pg.Pool, 'query'>

/**
 * Every stored row in chain order, each with what its columns say that its line does not (a
 * row edited in the table, which queries would then find or miss wrongly), for verification.
 * Given a range, one stream from its last checkpoint at or before `fromSeq` (or its start) up
 * to `toSeq`.
 */
export async function* verificationRows(
  db: Queryable,
  table: string,
  range?: VerifyRange,
): AsyncGenerator<{ line: string; problem: string | null }> {
  assertPlainTable(table)
  const where: string[] = []
  const params: unknown[] = []
  if (range !== undefined) {
    const anchor = await db.query<{ seq: string | null }>(
      `SELECT max(seq) AS seq FROM ${table} WHERE stream = $1 AND type = 'checkpoint' AND seq <= $2`,
      [range.stream, range.fromSeq],
    )
    params.push(range.stream, anchor.rows[0]?.seq ?? 1)
    where.push('stream = $1', 'seq >= $2')
    if (range.toSeq !== undefined) {
      params.push(range.toSeq)
      where.push('seq <= $3')
    }
  }
  for await (const row of pages(db, table, where, params)) yield { line: row.line, problem: columnProblem(row) }
}

/** Rows matching `where`, ordered by stream and seq, a page of 1,000 at a time. */
async function* pages(
  db: Queryable,
  table: string,
  where: readonly string[],
  params: readonly unknown[],
): AsyncGenerator<StoredRow> {
  const base = `SELECT * FROM ${table}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`
  let after: [string, string] | null = null
  for (;;) {
    const page: pg.QueryResult<StoredRow> = await db.query(
      after === null
        ? `${base} ORDER BY stream, seq LIMIT 1000`
        : `${base}${where.length > 0 ? ' AND' : ' WHERE'} (stream, seq) > ($${params.length + 1}, $${params.length + 2}) ORDER BY stream, seq LIMIT 1000`,
      after === null ? [...params] : [...params, ...after],
    )
    yield* page.rows
    if (page.rows.length < 1000) return
    const last = page.rows[page.rows.length - 1] as StoredRow
    after = [last.stream, last.seq]
  }
}
