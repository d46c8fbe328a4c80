import { defineConfig } from 'vitest/config'

const CHAOS = ['test/approvals/approvals-chaos.test.ts']

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // `npm test` runs both; `npx vitest --project main` skips the slow kill-and-restart runs while iterating.
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: CHAOS } },
      { extends: true, test: { name: 'chaos', include: CHAOS } },
    ],
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      reporter: ['text-summary'],
      // Code that only runs in child processes (workers, the CLI) is not counted, hence the margins.
      thresholds: { lines: 78, statements: 75, functions: 80, branches: 65 },
    },
  },
})
