/**
 * `corridor policy check [path]`: compiles exactly the policy at the path given (a policy
 * directory or a corridor.yaml), or the one --config names, and says which files it read. Every
 * problem is reported as file:line:column and the exit code is 1.
 */
import { loadBundle } from '../../policy/bundle.ts'
import { bundlePathsAt, CONFIG_OPTION, configPath, DEFAULT_CONFIG, type Command } from '../command.ts'

export const policyCheckCommand: Command = {
  words: ['policy', 'check'],
  usage: `corridor policy check [policy-dir | corridor.yaml] [--config ${DEFAULT_CONFIG}]`,
  options: CONFIG_OPTION,
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, out }) {
    const paths = bundlePathsAt(positionals[0] ?? configPath(values))
    const bundle = loadBundle(paths)
    out(
      `policy ok: ${bundle.version} (${bundle.policy.rules.length} rules, ${bundle.catalog.connectors.size} connectors, ${bundle.registry.agents.size} agents)`,
    )
    out(`  read ${paths.agents}, ${paths.connectors}, ${paths.policy}`)
    return 0
  },
}
