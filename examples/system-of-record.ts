/**
 * A tiny "system of record" for the demo: a customer-records API that accepts only its own
 * bearer token (the one Corridor injects) and says what it received, so you can see that the
 * agent's Corridor key never arrives.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'

const customers = new Map([
  ['c-1', { id: 'c-1', name: 'Ada Lovelace', plan: 'enterprise', notes: [] as unknown[] }],
  ['c-2', { id: 'c-2', name: 'Grace Hopper', plan: 'team', notes: [] as unknown[] }],
])

export function startSystemOfRecord(port: number, tokenFile: string, host = '127.0.0.1'): Promise<Server> {
  const token = readFileSync(tokenFile, 'utf8').trim()
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body, null, 2) + '\n')
    }
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, { error: 'invalid API token' })
    const received = { method: req.method, path: req.url, saw_agent_key: JSON.stringify(req.headers).includes('cor_') }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://records')
      const parts = url.pathname.split('/').filter(Boolean) // api, customers, id, notes
      if (parts[0] !== 'api') return send(404, { error: 'not found', received })
      if (req.method === 'GET' && parts[1] === 'customers' && parts.length === 2)
        return send(200, { customers: [...customers.values()], received })
      const customer = customers.get(parts[2] ?? '')
      if (parts[1] === 'customers' && customer === undefined) return send(404, { error: 'no such customer', received })
      if (req.method === 'GET' && parts.length === 3) return send(200, { customer, received })
      if (req.method === 'POST' && parts[3] === 'notes') {
        const note = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as unknown
        customer!.notes.push(note)
        return send(201, { note, received })
      }
      if (req.method === 'GET' && parts[1] === 'export') return send(200, { export: [...customers.values()], received })
      send(404, { error: 'not found', received })
    })
  })
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)))
}
