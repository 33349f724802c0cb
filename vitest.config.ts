import { defineConfig } from 'vitest/config';

// Unit tests: pure core, no servers.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    globals: false,
    testTimeout: 30_000,
  },
});
