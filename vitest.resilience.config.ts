// `npm run test:resilience`: the fault tests in long mode (longer loads, more fuzz runs), one file at a time.
import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

export default mergeConfig(
  base,
  defineConfig({
    test: {
      include: ['test/resilience/**/*.test.ts'],
      env: { RESILIENCE_LONG: '1' },
      testTimeout: 300_000,
      fileParallelism: false,
    },
  }),
);
