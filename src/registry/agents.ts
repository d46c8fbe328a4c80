/**
 * The agent registry (agents.yaml): who may call Corridor, on whose behalf, and how far they
 * may go. API keys are stored only as SHA-256 hashes; keys carry 256 random bits, so a fast
 * hash is enough (there is nothing to brute-force) and lookups stay O(1).
 */
import { hash, randomBytes } from 'node:crypto'
import type { YamlReader } from '../config/yaml-reader.ts'
import { agentsFileSchema } from './agents-schema.ts'
import type { Tier } from './risk.ts'

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
  /** sha256 hex of an operator key → operator id (who may stop and resume agents). */
  readonly operatorKeys: ReadonlyMap<string, string>
  /** sha256 hex of an auditor key → auditor id (who may read the audit trail on the admin API). */
  readonly auditorKeys: ReadonlyMap<string, string>
}

export const API_KEY_PREFIX = 'cor_'
export const APPROVER_KEY_PREFIX = 'cap_'
export const OPERATOR_KEY_PREFIX = 'cop_'
export const AUDITOR_KEY_PREFIX = 'cau_'
/** Every kind of key Corridor mints: whatever redacts keys from text it records goes by this list. */
export const CORRIDOR_KEY_PREFIXES = [
  API_KEY_PREFIX,
  APPROVER_KEY_PREFIX,
  OPERATOR_KEY_PREFIX,
  AUDITOR_KEY_PREFIX,
] as const

/** On every request that presents a key: the one-shot hash, without a Hash object to allocate (a third of the time). */
export function hashApiKey(key: string): string {
  return hash('sha256', key, 'hex')
}

/** Mints a new agent (cor_), approver (cap_), operator (cop_) or auditor (cau_) key; only its hash is ever stored. */
export function mintApiKey(prefix: string = API_KEY_PREFIX): { key: string; hash: string } {
  const key = prefix + randomBytes(32).toString('base64url')
  return { key, hash: `sha256:${hashApiKey(key)}` }
}

/** Reads agents.yaml; problems are recorded on the reader. */
export function readAgentRegistry(reader: YamlReader): AgentRegistry {
  const file = reader.parse(agentsFileSchema, 'agents file')
  const entries = file
    ? file.agents.map((a, i) => [a, i] as const)
    : reader.wellFormedEntries(['agents'], agentsFileSchema.shape.agents.element)
  const agents = new Map<string, Agent>()
  const keyHashes = new Map<string, string>()
  for (const [a, i] of entries) {
    if (agents.has(a.id)) reader.issueAt(['agents', i, 'id'], `agents[${i}]: duplicate agent id '${a.id}'`)
    agents.set(a.id, {
      id: a.id,
      owner: a.owner,
      tier: a.tier,
      status: a.status ?? 'active',
      connectors: new Set(a.connectors),
      user: a.user ?? 'optional',
      description: a.description ?? '',
    })
    for (const { hash } of a.api_keys ?? []) {
      const hex = hash.slice('sha256:'.length)
      const holder = keyHashes.get(hex)
      if (holder !== undefined)
        reader.issueAt(['agents', i, 'api_keys'], `agents[${i}]: a key hash is already registered to '${holder}'`)
      keyHashes.set(hex, a.id)
    }
  }
  const approverKeys = new Map<string, Approver>()
  const approverIds = new Set<string>()
  file?.approvers?.forEach((a, i) => {
    const approver: Approver = { id: a.id, groups: a.groups }
    if (approverIds.has(a.id))
      reader.issueAt(['approvers', i, 'id'], `approvers[${i}]: duplicate approver id '${a.id}'`)
    approverIds.add(a.id)
    for (const { hash } of a.keys) {
      const hex = hash.slice('sha256:'.length)
      if (approverKeys.has(hex) || keyHashes.has(hex))
        reader.issueAt(['approvers', i, 'keys'], `approvers[${i}]: a key hash is already registered`)
      approverKeys.set(hex, approver)
    }
  })
  const taken = (hex: string): boolean => approverKeys.has(hex) || keyHashes.has(hex)
  const operatorKeys = principalKeys(reader, 'operators', file?.operators ?? [], taken)
  const auditorKeys = principalKeys(
    reader,
    'auditors',
    file?.auditors ?? [],
    (hex) => taken(hex) || operatorKeys.has(hex),
  )
  return { agents, keyHashes, approverKeys, operatorKeys, auditorKeys }
}

/** Key hash → id for a list of people holding keys of one role (operators, auditors). */
function principalKeys(
  reader: YamlReader,
  list: 'operators' | 'auditors',
  entries: readonly { id: string; keys: readonly { hash: string }[] }[],
  taken: (hex: string) => boolean,
): Map<string, string> {
  const keys = new Map<string, string>()
  const ids = new Set<string>()
  entries.forEach((p, i) => {
    if (ids.has(p.id)) reader.issueAt([list, i, 'id'], `${list}[${i}]: duplicate id '${p.id}'`)
    ids.add(p.id)
    for (const { hash } of p.keys) {
      const hex = hash.slice('sha256:'.length)
      if (keys.has(hex) || taken(hex))
        reader.issueAt([list, i, 'keys'], `${list}[${i}]: a key hash is already registered`)
      keys.set(hex, p.id)
    }
  })
  return keys
}
