/**
 * The policy bundle: agent registry + connector catalog + rules, loaded and compiled together
 * because each refers to the others. Its version is a hash of the three files, so every audit
 * record names exactly the policy text that decided it.
 */
import { createHash } from 'node:crypto'
import { isMap, isScalar, isSeq, type Node } from 'yaml'
import type { BundlePaths } from '../config/server-config.ts'
import { ConfigError, YamlReader } from '../config/yaml-reader.ts'
import { readAgentRegistry, type AgentRegistry } from '../registry/agents.ts'
import { readConnectorCatalog, type ConnectorCatalog } from '../registry/connectors.ts'
import { compilePolicy, type CompiledPolicy } from './compile.ts'

export type { BundlePaths }

export interface PolicyBundle {
  readonly registry: AgentRegistry
  readonly catalog: ConnectorCatalog
  readonly policy: CompiledPolicy
  /** `sha256:` + the first 16 hex digits of the hash over the three files. */
  readonly version: string
  readonly loadedAt: string
}

/** Loads and compiles the three files; throws a ConfigError listing every problem found. */
export function loadBundle(paths: BundlePaths): PolicyBundle {
  const agentsFile = YamlReader.fromFile(paths.agents)
  const connectorsFile = YamlReader.fromFile(paths.connectors)
  const policyFile = YamlReader.fromFile(paths.policy)
  const registry = readAgentRegistry(agentsFile)
  const catalog = readConnectorCatalog(connectorsFile)
  // Grants are checked against a catalog read in full; a connector with problems of its own is not named twice.
  if (connectorsFile.issues.length === 0)
    for (const agent of registry.agents.values()) {
      for (const c of agent.connectors) {
        if (!catalog.connectors.has(c))
          agentsFile.issue(
            grantNode(agentsFile, agent.id, c),
            `agent '${agent.id}' is granted unknown connector '${c}'`,
          )
      }
    }
  const issues = [...agentsFile.issues, ...connectorsFile.issues]
  // Rules are checked against the registry and catalog, so only compile them once those are sound.
  if (issues.length > 0) throw new ConfigError(issues)
  const policy = compilePolicy(policyFile, registry, catalog)
  policyFile.assertValid()
  const hash = createHash('sha256')
  for (const f of [agentsFile, connectorsFile, policyFile]) hash.update(f.text).update('\0')
  return {
    registry,
    catalog,
    policy,
    version: `sha256:${hash.digest('hex').slice(0, 16)}`,
    loadedAt: new Date().toISOString(),
  }
}

/** Where agents.yaml grants `connector` to `agentId`, so the problem is reported at that line. */
function grantNode(r: YamlReader, agentId: string, connector: string): Node | undefined {
  const agents = r.doc.get('agents', true)
  if (!isSeq(agents)) return undefined
  for (const item of agents.items) {
    if (!isMap(item) || item.get('id') !== agentId) continue
    const granted = item.get('connectors', true) as Node | undefined
    if (isSeq(granted)) return (granted.items as Node[]).find((n) => isScalar(n) && n.value === connector) ?? granted
    return granted
  }
  return undefined
}
