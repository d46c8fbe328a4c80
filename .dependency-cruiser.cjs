/**
 * The dependency direction of src/, checked on every `npm test` (docs/architecture.md explains it).
 * Lower layers never import higher ones:
 *
 *   shared → config → registry → request → policy          the pure core: no I/O of its own
 *   identity, credentials, audit, controls                  adapters: import only the core
 *   telemetry                                               metrics read from audit records: core, audit
 *   forwarding                                              the one forwarding stage: core, credentials, audit
 *   approvals                                               core, adapters, forwarding (interfaces, never proxy/ or cli/)
 *   proxy, admin                                            the listeners (admin never imports proxy)
 *   cli, workers, main.ts                                   composition
 */
const layer = (from, allowed) => ({
  name: `${from}-imports-only-${allowed.length === 0 ? 'nothing' : allowed.join('-')}`,
  severity: 'error',
  from: { path: `^src/${from}/` },
  to: { path: '^src/', pathNot: [`^src/${from}/`, ...allowed.map((a) => `^src/${a}/`)] },
})

const CORE = ['shared', 'config', 'registry', 'request', 'policy']

module.exports = {
  forbidden: [
    layer('shared', []),
    layer('config', ['shared']),
    layer('registry', ['shared', 'config']),
    layer('request', ['shared', 'registry']),
    layer('policy', ['shared', 'config', 'registry', 'request']),
    layer('identity', CORE),
    layer('credentials', CORE),
    layer('audit', CORE),
    layer('controls', CORE),
    layer('telemetry', [...CORE, 'audit']),
    layer('forwarding', [...CORE, 'credentials', 'audit']),
    layer('approvals', [...CORE, 'identity', 'credentials', 'audit', 'controls', 'forwarding']),
    layer('proxy', [...CORE, 'identity', 'credentials', 'audit', 'controls', 'telemetry', 'forwarding', 'approvals']),
    layer('admin', [...CORE, 'identity', 'credentials', 'audit', 'controls', 'telemetry', 'approvals']),
    layer('workers', ['shared', 'config']),
    {
      name: 'no-cycles',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'src-never-imports-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
