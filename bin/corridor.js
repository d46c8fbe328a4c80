#!/usr/bin/env node
// Runs the compiled CLI when built (npm run build), otherwise the TypeScript sources directly
// (Node ≥ 22.18 strips types natively; npm scripts use the Node 24 from devDependencies).
import { existsSync } from 'node:fs'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `corridor needs Node 22.18 or newer (24 recommended); this is ${process.version}. Run it through npm (npm start, npm run corridor -- …), which uses the Node 24 from devDependencies.`,
  )
  process.exit(1)
}

const built = new URL('../dist/cli/index.js', import.meta.url)
const { main } = await import(existsSync(built) ? built.href : new URL('../src/cli/index.ts', import.meta.url).href)
const code = await main(process.argv.slice(2))
process.exitCode = code
