import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['*/test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Integration suites share one PostgreSQL (and one Kafka broker); on 2 cores two workers is the sweet spot.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.keel-test/results.json' }]] : ['default'],
  },
});
