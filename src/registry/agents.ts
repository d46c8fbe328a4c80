/**
 * The agent registry (agents.yaml): who may call Corridor, on whose behalf, and how far they
 * may go. API keys are stored only as SHA-256 hashes; keys carry 256 random bits, so a fast
 * hash is enough (there is nothing to brute-force) and lookups stay O(1).
 */
import { createHash, randomBytes } from 'node:crypto'
import { YamlReader } from '../config/yaml-reader.ts'
import { TIERS, type Tier } from './risk.ts'

export type AgentStatus = 'active' | 'suspended'
export type UserRequirement = 'optional' | 'required'

export interface Agent {
  readonly id: string
  readonly owner: string
  readonly tier: Tier
  readonly status: AgentStatus
  readonly connectors: ReadonlySet<string>
  /** Whether a delegated user token must accompany every request. */
  readonly user: UserRequirement
  readonly description: string
}

export interface AgentRegistry {
  readonly agents: ReadonlyMap<string, Agent>
  /** sha256 hex of an API key → agent id. */
  readonly keyHashes: ReadonlyMap<string, string>
}

export const API_KEY_PREFIX = 'cor_'

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}

/** Mints a new agent API key; only its hash is ever stored. */
export function mintApiKey(): { key: string; hash: string } {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url')
  return { key, hash: `sha256:${hashApiKey(key)}` }
}

export function readAgentRegistry(reader: YamlReader): AgentRegistry {
  const agents = new Map<string, Agent>()
  const keyHashes = new Map<string, string>()
  const top = reader.map(reader.root, 'agents file', ['agents'], ['agents'])
  reader.list(top.get('agents'), 'agents').forEach((node, i) => {
    const where = `agents[${i}]`
    const f = reader.map(node, where, ['id', 'owner', 'tier', 'status', 'connectors', 'user', 'api_keys', 'description'], ['id', 'owner', 'tier', 'connectors'])
    const id = reader.string(f.get('id'), `${where}.id`)
    if (agents.has(id)) reader.issue(f.get('id'), `${where}: duplicate agent id '${id}'`)
    const agent: Agent = {
      id,
      owner: reader.string(f.get('owner'), `${where}.owner`),
      tier: reader.oneOf(f.get('tier'), `${where}.tier`, TIERS),
      status: f.has('status') ? reader.oneOf(f.get('status'), `${where}.status`, ['active', 'suspended'] as const) : 'active',
      connectors: new Set(reader.strings(f.get('connectors'), `${where}.connectors`)),
      user: f.has('user') ? reader.oneOf(f.get('user'), `${where}.user`, ['optional', 'required'] as const) : 'optional',
      description: f.has('description') ? reader.string(f.get('description'), `${where}.description`) : '',
    }
    agents.set(id, agent)
    if (f.has('api_keys')) {
      reader.list(f.get('api_keys'), `${where}.api_keys`).forEach((keyNode, k) => {
        const kf = reader.map(keyNode, `${where}.api_keys[${k}]`, ['hash', 'label', 'created'], ['hash'])
        const hash = reader.string(kf.get('hash'), `${where}.api_keys[${k}].hash`)
        const m = /^sha256:([0-9a-f]{64})$/.exec(hash)
        if (!m) {
          reader.issue(kf.get('hash'), `${where}.api_keys[${k}].hash must be 'sha256:' followed by 64 lowercase hex digits (see 'corridor keys mint')`)
          return
        }
        if (keyHashes.has(m[1] as string)) reader.issue(kf.get('hash'), `${where}: this key hash is already registered to '${keyHashes.get(m[1] as string)}'`)
        keyHashes.set(m[1] as string, id)
      })
    }
  })
  return { agents, keyHashes }
}
