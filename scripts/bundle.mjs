// Bundles the server (src/server.ts and what it imports) into dist/server.js, after tsc has built dist/.
//
// Why: a cold start spent most of its time resolving and reading ~600 module files; one file starts
// in roughly half the time (see README, "Measured"). The CLIs in dist/cli/ stay per-file tsc output.
// Whitespace and comments only are minified, so stack traces keep their function names, and
// dist/server.js.map maps positions back to src/. The output is ASCII (legal comments go to a
// linked file): V8 keeps a module's source in memory, and one non-ASCII character would store the
// whole 2.7 MB as two-byte characters.
// `--outfile <path>` writes elsewhere (the build test bundles into a temporary directory).
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const { values } = parseArgs({ options: { outfile: { type: 'string', default: 'dist/server.js' } } });

await build({
  entryPoints: ['src/server.ts'],
  outfile: values.outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20.19',
  minifyWhitespace: true,
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'linked',
  logLevel: 'warning',
  // Loaded from node_modules at run time: files next to their code (wasm, worker scripts, the docs
  // page's assets), a native addon that is optional, or code only migrations run.
  external: [
    '@electric-sql/pglite',
    '@electric-sql/pglite-socket',
    '@fastify/swagger-ui',
    'node-pg-migrate',
    'pg-native',
    'pino',
    'pino-pretty',
  ],
  // Every module of ours that reads import.meta.url lives in src/lib/ and resolves files relative
  // to dist/lib/ (package.json, migrations/, node_modules): keep that true inside the bundle.
  define: { 'import.meta.url': '__moduleUrl' },
  banner: {
    js: [
      "import { createRequire as __createRequire } from 'node:module';",
      "const __moduleUrl = new URL('./lib/server.js', import.meta.url).href;",
      // CommonJS dependencies call require() for Node built-ins.
      'const require = __createRequire(import.meta.url);',
    ].join('\n'),
  },
});
