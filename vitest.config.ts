import { configDefaults, defineConfig, type ViteUserConfig } from 'vitest/config'

/** What both suites share: `npm test` (this file) and `npm run test:long` (vitest.long.config.ts). */
export const sharedTestOptions: NonNullable<ViteUserConfig['test']> = {
  globalSetup: ['test/support/global-setup.ts'],
  // Each file gets its own database and Redis db; forks keep PGlite's WASM heaps apart.
  pool: 'forks',
  maxWorkers: 2,
  testTimeout: 30_000,
  hookTimeout: 60_000,
  teardownTimeout: 30_000
}

export default defineConfig({
  test: {
    ...sharedTestOptions,
    include: ['test/**/*.test.ts'],
    // Long property runs and load tests: npm run test:long.
    exclude: [...configDefaults.exclude, 'test/**/*.long.test.ts']
  }
})
