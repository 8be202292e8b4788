// `npm run test:resilience`: the fault tests in long mode (longer loads, more fuzz runs), one file at a time.
import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

// Not mergeConfig: it concatenates `include`, which would run the whole suite.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: ['test/resilience/**/*.test.ts'],
    env: { RESILIENCE_LONG: '1' },
    testTimeout: 300_000,
    fileParallelism: false,
  },
});
