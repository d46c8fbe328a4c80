/**
 * Counters and histograms for the per-request metrics, kept as plain numbers per label set and
 * turned into Prometheus samples only when /metrics is scraped. prom-client's own classes
 * validate, sort and hash the label object on every observation, which was most of what metrics
 * cost a request; here the caller passes the label values in a fixed order and a series is found
 * by one Map lookup. Also values kept elsewhere and only read at scrape (ReadAtScrape). All of
 * them register in prom-client's Registry, which formats and escapes them with everything else.
 */
import type { Registry } from 'prom-client'

type LabelValue = string | number

/** The shape prom-client's Registry reads from a metric at scrape time. */
interface Sample {
  readonly metricName?: string
  readonly labels: Record<string, LabelValue>
  readonly value: number
}
/**
 * How the supervisor combines one figure from several workers (`workers: N`): counters and
 * histograms add up; a gauge says which of its workers' values stands for all of them.
 */
export type Aggregator = 'sum' | 'max' | 'min'

interface ScrapedMetric {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram'
  readonly values: Sample[]
  readonly aggregator: Aggregator
}

interface Entry<S> {
  readonly labels: Record<string, LabelValue>
  readonly state: S
}

abstract class LabelledSeries<S> {
  readonly name: string
  readonly help: string
  readonly labelNames: readonly string[]
  /**
   * A tree of Maps, one level per label, so that finding a series allocates nothing: label values
   * are mostly constant strings (connector ids, codes) whose hashes V8 keeps, or small numbers.
   * A value is a key as given, so a caller passes each label always as a string or always as a number.
   */
  readonly #root = new Map<LabelValue, unknown>()
  readonly #entries: Entry<S>[] = []

  constructor(name: string, help: string, labelNames: readonly string[], registry: Registry) {
    if (labelNames.length === 0) throw new TypeError(`${name}: a labelled series needs at least one label`)
    this.name = name
    this.help = help
    this.labelNames = labelNames
    // The Registry's declared parameter is its own classes; it reads only name, help, type and get().
    registry.registerMetric(this as never)
  }

  protected series(values: readonly LabelValue[]): S {
    const last = this.labelNames.length - 1
    if (values.length !== last + 1) throw new TypeError(`${this.name}: wrong number of label values`)
    let node = this.#root
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i] as LabelValue) as Map<LabelValue, unknown> | undefined
      if (next === undefined) {
        next = new Map()
        node.set(values[i] as LabelValue, next)
      }
      node = next
    }
    let entry = node.get(values[last] as LabelValue) as Entry<S> | undefined
    if (entry === undefined) {
      const labels: Record<string, LabelValue> = {}
      this.labelNames.forEach((label, i) => (labels[label] = values[i] as LabelValue))
      entry = { labels, state: this.fresh() }
      node.set(values[last] as LabelValue, entry)
      this.#entries.push(entry)
    }
    return entry.state
  }

  protected abstract fresh(): S
  protected abstract samples(labels: Record<string, LabelValue>, state: S): Sample[]

  get(): ScrapedMetric {
    const values: Sample[] = []
    for (const { labels, state } of this.#entries) values.push(...this.samples(labels, state))
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' }
  }

  abstract readonly type: 'counter' | 'histogram'
}

export class SeriesCounter extends LabelledSeries<{ value: number }> {
  readonly type = 'counter'

  /** Adds one (or n) to the series of these label values, given in the order of labelNames. */
  inc(values: readonly LabelValue[], n = 1): void {
    this.series(values).value += n
  }

  protected fresh(): { value: number } {
    return { value: 0 }
  }

  protected samples(labels: Record<string, LabelValue>, state: { value: number }): Sample[] {
    return [{ labels, value: state.value }]
  }
}

interface HistogramState {
  /** Per bucket (not cumulative), the last slot for values above every bound. */
  readonly counts: Float64Array
  sum: number
}

export class SeriesHistogram extends LabelledSeries<HistogramState> {
  readonly type = 'histogram'
  readonly #bounds: readonly number[]

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    bounds: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry)
    this.#bounds = [...bounds].sort((a, b) => a - b)
  }

  /** Records one value in the series of these label values, given in the order of labelNames. */
  observe(values: readonly LabelValue[], value: number): void {
    if (!Number.isFinite(value)) return
    const state = this.series(values)
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > (bounds[i] as number)) i++
    state.counts[i] = (state.counts[i] as number) + 1
    state.sum += value
  }

  protected fresh(): HistogramState {
    return { counts: new Float64Array(this.#bounds.length + 1), sum: 0 }
  }

  protected samples(labels: Record<string, LabelValue>, state: HistogramState): Sample[] {
    const out: Sample[] = []
    let cumulative = 0
    this.#bounds.forEach((le, i) => {
      cumulative += state.counts[i] as number
      out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: cumulative })
    })
    cumulative += state.counts[this.#bounds.length] as number
    out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: cumulative })
    out.push({ metricName: `${this.name}_sum`, labels, value: state.sum })
    out.push({ metricName: `${this.name}_count`, labels, value: cumulative })
    return out
  }
}

/**
 * One unlabelled value kept elsewhere and read when /metrics is scraped, absent from the scrape
 * while `read` answers null (a queue that does not answer, a feature that is off). prom-client's
 * own unlabelled metrics always show a sample: 0 before anything sets them, and afterwards the last
 * value set, which would read as a real figure.
 */
export class ReadAtScrape {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge'
  readonly aggregator: Aggregator
  readonly #read: () => number | null | Promise<number | null>

  constructor(
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    read: () => number | null | Promise<number | null>,
    registry: Registry,
    aggregator: Aggregator = 'sum',
  ) {
    this.name = name
    this.help = help
    this.type = type
    this.aggregator = aggregator
    this.#read = read
    registry.registerMetric(this as never)
  }

  async get(): Promise<ScrapedMetric> {
    const value = await this.#read()
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: value === null ? [] : [{ labels: {}, value }],
      aggregator: this.aggregator,
    }
  }
}
