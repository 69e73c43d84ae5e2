import { defineConfig } from 'vitest/config';

// Integration tests start real masters on loopback: one file at a time, generous timeouts
// sized for a loaded 2-core machine.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The soak runs for minutes: `npm run soak`.
    exclude: process.env.PREFORK_SOAK ? [] : ['test/soak/**', '**/node_modules/**'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
