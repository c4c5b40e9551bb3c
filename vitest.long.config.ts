import { defineConfig } from 'vitest/config'
import { sharedTestOptions } from './vitest.config.js'

/** `npm run test:long`: the long property runs and load tests (`*.long.test.ts`), which `npm test` leaves out. */
export default defineConfig({
  test: {
    ...sharedTestOptions,
    include: ['test/**/*.long.test.ts']
  }
})
