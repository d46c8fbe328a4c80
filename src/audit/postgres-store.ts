/**
 * The audit trail of every replica in one PostgreSQL table, for queries across replicas. Each
 * entry is stored as the exact line the replica wrote (so the hash chain verifies on the copy),
 * keyed by its stream and sequence number, so that shipping the same entry twice stores it once,
 * with the columns queries filter on beside it.
 */
import pg from 'pg'
import type { AuditFilter } from './query.ts'
import type { ShipTarget } from './shipper.ts'

/** One line of a local audit file, parsed as far as the table needs. */
export interface ShippedEntry {
  readonly stream: string
  readonly seq: number
  readonly line: string
  readonly type: string
  readonly time: string | null
  readonly requestId: string | null
  readonly approvalId: string | null
  readonly agent: string | null
}

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
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(options.table)) throw new Error(`not a plain table name: '${options.table}'`)
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
    const base = `SELECT stream, seq, line FROM ${this.#table}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`
    let after: [string, string] | null = null
    for (;;) {
      const page: pg.QueryResult<{ stream: string; seq: string; line: string }> = await this.#pool.query(
        after === null
          ? `${base} ORDER BY stream, seq LIMIT 1000`
          : `${base}${where.length > 0 ? ' AND' : ' WHERE'} (stream, seq) > ($${params.length + 1}, $${params.length + 2}) ORDER BY stream, seq LIMIT 1000`,
        after === null ? params : [...params, ...after],
      )
      for (const row of page.rows) yield row.line
      if (page.rows.length < 1000) return
      const last = page.rows[page.rows.length - 1] as { stream: string; seq: string }
      after = [last.stream, last.seq]
    }
  }

  close(): Promise<void> {
    return this.#pool.end()
  }
}
