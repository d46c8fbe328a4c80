/**
 * The agent registry (agents.yaml): who may call Corridor, on whose behalf, and how far they
 * may go. API keys are stored only as SHA-256 hashes; keys carry 256 random bits, so a fast
 * hash is enough (there is nothing to brute-force) and lookups stay O(1).
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Node } from 'yaml'
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

/** A person who may release or reject held requests (identified by an approver key; IdP users come from corridor.yaml). */
export interface Approver {
  readonly id: string
  readonly groups: readonly string[]
}

export interface AgentRegistry {
  readonly agents: ReadonlyMap<string, Agent>
  /** sha256 hex of an API key → agent id. */
  readonly keyHashes: ReadonlyMap<string, string>
  /** sha256 hex of an approver key → approver. */
  readonly approverKeys: ReadonlyMap<string, Approver>
}

export const API_KEY_PREFIX = 'cor_'
export const APPROVER_KEY_PREFIX = 'cap_'

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}

/** Mints a new agent (cor_) or approver (cap_) key; only its hash is ever stored. */
export function mintApiKey(prefix: string = API_KEY_PREFIX): { key: string; hash: string } {
  const key = prefix + randomBytes(32).toString('base64url')
  return { key, hash: `sha256:${hashApiKey(key)}` }
}

export function readAgentRegistry(reader: YamlReader): AgentRegistry {
  const agents = new Map<string, Agent>()
  const keyHashes = new Map<string, string>()
  const top = reader.map(reader.root, 'agents file', ['agents', 'approvers'], ['agents'])
  reader.list(top.get('agents'), 'agents').forEach((node, i) => {
    const where = `agents[${i}]`
    const f = reader.map(
      node,
      where,
      ['id', 'owner', 'tier', 'status', 'connectors', 'user', 'api_keys', 'description'],
      ['id', 'owner', 'tier', 'connectors'],
    )
    const id = reader.string(f.get('id'), `${where}.id`)
    if (agents.has(id)) reader.issue(f.get('id'), `${where}: duplicate agent id '${id}'`)
    const agent: Agent = {
      id,
      owner: reader.string(f.get('owner'), `${where}.owner`),
      tier: reader.oneOf(f.get('tier'), `${where}.tier`, TIERS),
      status: f.has('status')
        ? reader.oneOf(f.get('status'), `${where}.status`, ['active', 'suspended'] as const)
        : 'active',
      connectors: new Set(reader.strings(f.get('connectors'), `${where}.connectors`)),
      user: f.has('user')
        ? reader.oneOf(f.get('user'), `${where}.user`, ['optional', 'required'] as const)
        : 'optional',
      description: f.has('description') ? reader.string(f.get('description'), `${where}.description`) : '',
    }
    agents.set(id, agent)
    if (f.has('api_keys')) {
      for (const hash of readKeyHashes(reader, f.get('api_keys'), `${where}.api_keys`)) {
        if (keyHashes.has(hash))
          reader.issue(f.get('api_keys'), `${where}: a key hash is already registered to '${keyHashes.get(hash)}'`)
        keyHashes.set(hash, id)
      }
    }
  })
  const approverKeys = new Map<string, Approver>()
  const approverIds = new Set<string>()
  if (top.has('approvers')) {
    reader.list(top.get('approvers'), 'approvers').forEach((node, i) => {
      const where = `approvers[${i}]`
      const f = reader.map(node, where, ['id', 'groups', 'keys', 'description'], ['id', 'groups', 'keys'])
      const approver: Approver = {
        id: reader.string(f.get('id'), `${where}.id`),
        groups: reader.strings(f.get('groups'), `${where}.groups`),
      }
      if (approverIds.has(approver.id)) reader.issue(f.get('id'), `${where}: duplicate approver id '${approver.id}'`)
      approverIds.add(approver.id)
      for (const hash of readKeyHashes(reader, f.get('keys'), `${where}.keys`)) {
        if (approverKeys.has(hash) || keyHashes.has(hash))
          reader.issue(f.get('keys'), `${where}: a key hash is already registered`)
        approverKeys.set(hash, approver)
      }
    })
  }
  return { agents, keyHashes, approverKeys }
}

/** A list of { hash: sha256:<hex>, label } entries → the hex digests. */
function readKeyHashes(reader: YamlReader, node: Node | undefined, where: string): string[] {
  const out: string[] = []
  reader.list(node, where).forEach((keyNode, k) => {
    const kf = reader.map(keyNode, `${where}[${k}]`, ['hash', 'label', 'created'], ['hash'])
    const hash = reader.string(kf.get('hash'), `${where}[${k}].hash`)
    const m = /^sha256:([0-9a-f]{64})$/.exec(hash)
    if (!m)
      reader.issue(
        kf.get('hash'),
        `${where}[${k}].hash must be 'sha256:' followed by 64 lowercase hex digits (see 'corridor keys mint')`,
      )
    else out.push(m[1] as string)
  })
  return out
}
