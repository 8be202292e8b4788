// Preload for the tracing tests: appends the URL of every module resolved that belongs to
// OpenTelemetry (or its loader hook) to the file named by RECORD_MODULES_FILE.
import { appendFileSync } from 'node:fs';
import module from 'node:module';

const file = process.env.RECORD_MODULES_FILE;
const WATCHED = /@opentelemetry|@fastify\/otel|import-in-the-middle|require-in-the-middle/;
if (file) {
  module.registerHooks({
    resolve(specifier, context, nextResolve) {
      const result = nextResolve(specifier, context);
      if (WATCHED.test(result.url)) appendFileSync(file, `${result.url}\n`);
      return result;
    },
  });
}
