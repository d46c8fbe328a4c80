#!/usr/bin/env node
// Runs the compiled CLI when built (npm run build), otherwise the TypeScript sources directly
// (Node ≥ 22.18 strips types natively; npm scripts use the Node 24 from devDependencies).
import { existsSync } from 'node:fs'

const built = new URL('../dist/cli/index.js', import.meta.url)
const { main } = await import(existsSync(built) ? built.href : new URL('../src/cli/index.ts', import.meta.url).href)
const code = await main(process.argv.slice(2))
process.exitCode = code
