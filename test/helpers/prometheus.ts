/**
 * /metrics as a real Prometheus text-format parser reads it (the Python prometheus_client), so a
 * test checks what a scraper sees, not what Corridor meant to print.
 */
import { execFileSync } from 'node:child_process'
import { request, type Dispatcher } from 'undici'
import { expect } from 'vitest'

/** One sample: name, labels, value (NaN read as null). */
export type Sample = [string, Record<string, string>, number]

/** The samples of every family, and each family's declared type by name. */
export interface Scrape {
  readonly samples: Sample[]
  readonly types: Record<string, string>
}

const PARSE =
  'import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\n' +
  'out = []\ntypes = {}\nfor f in text_string_to_metric_families(sys.stdin.read()):\n' +
  '    types[f.name] = f.type\n' +
  '    for s in f.samples: out.append([s.name, s.labels, s.value if s.value == s.value else None])\n' +
  'print(json.dumps({"samples": out, "types": types}))\n'

/** `dispatcher`: a connection of the caller's (one of its own reaches whichever worker the kernel picks). */
export async function scrapeMetrics(adminUrl: string, dispatcher?: Dispatcher): Promise<Scrape> {
  const res = await request(`${adminUrl}/metrics`, dispatcher === undefined ? {} : { dispatcher })
  const text = await res.body.text()
  expect(res.statusCode, text).toBe(200)
  expect(res.headers['content-type']).toContain('text/plain; version=0.0.4')
  return parseMetrics(text)
}

export function parseMetrics(text: string): Scrape {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PARSE], { input: text }).toString()) as Scrape
}

/** The sum of the samples named `name` whose labels include `labels`. */
export const sampleValue = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples
    .filter(([n, l]) => n === name && Object.entries(labels).every(([k, v]) => l[k] === v))
    .reduce((sum, [, , v]) => sum + v, 0)

/** Whether any sample is named `name`. */
export const hasSample = (samples: Sample[], name: string): boolean => samples.some(([n]) => n === name)
