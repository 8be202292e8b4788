// Bundles the server (src/server.ts and what it imports) into dist/server.bundle.cjs, after tsc has
// built dist/, puts the loader (scripts/server-loader.mjs) at dist/server.js, and makes the bundle's
// code cache (dist/server.bundle.cache) with the Node.js that runs this script.
//
// Why: a cold start spent most of its time resolving and reading ~600 module files; one file starts
// in roughly half the time, and with V8's code cache it skips most parsing and compiling too (see
// README, "Measured"). CommonJS, because Node.js 20 has a code cache API for scripts, not for ES
// modules. Whitespace and comments only are minified, so stack traces keep their function names, and
// server.bundle.cjs.map maps positions back to src/. The output is ASCII (legal comments go to a
// linked file): V8 keeps the source in memory, and one non-ASCII character would store the whole
// bundle as two-byte characters. The CLIs in dist/cli/ stay per-file tsc output.
// `--outdir <dir>` writes elsewhere (the build test bundles into a temporary directory).
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

/**
 * pg asks at load time whether it runs on Cloudflare Workers. Where Node has no `navigator` (Node 20)
 * it does so by constructing a `Response`, which loads Node's whole fetch implementation (undici):
 * ~25 ms of every start. The bundle targets Node only, so the answer is fixed at build time. The
 * build fails if pg changes that code, rather than silently dropping the fix.
 */
const skipCloudflareProbe = {
  name: 'pg-skip-cloudflare-probe',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]stream\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const call = 'if (isCloudflareRuntime()) {';
      if (!source.includes(call)) throw new Error(`${args.path}: isCloudflareRuntime() call not found`);
      return { contents: source.replace(call, 'if (false) {'), loader: 'js' };
    });
  },
};

/**
 * zod's translated error messages, which the service never uses, are left out of the bundle: ~0.3 MB
 * of source that V8 would otherwise hold in memory for the life of the process (~1 MB of idle RSS).
 * Only English is bundled (`z.locales.en`); any other locale throws, naming this file. Delete this
 * plugin from `plugins` to bring them back.
 */
const englishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer)
        ? { path: join(dirname(args.importer), '../locales/index.js'), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, async (args) => {
      const index = await readFile(args.path, 'utf8');
      const names = [...index.matchAll(/export \{ default as (\w+) \} from/g)].map((m) => m[1]);
      if (!names.includes('en')) throw new Error(`${args.path}: zod's locale list changed`);
      const lines = names.map((name) =>
        name === 'en'
          ? `export { default as en } from './en.js';`
          : `export const ${name} = () => { throw new Error('zod locale ${name} is not bundled: see scripts/bundle.mjs'); };`,
      );
      return { contents: lines.join('\n'), loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

const { values } = parseArgs({ options: { outdir: { type: 'string', default: 'dist' } } });
const outdir = resolve(values.outdir);

await build({
  entryPoints: ['src/server.ts'],
  outfile: join(outdir, 'server.bundle.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20.19',
  minifyWhitespace: true,
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'linked',
  logLevel: 'warning',
  // Loaded from node_modules at run time: files next to their code (wasm, the docs page's assets), a
  // native addon that is optional, code only migrations run, a dev dependency, and Fastify's default
  // schema compilers, which buildApp replaces with zod's (so they are never loaded at all).
  external: [
    '@electric-sql/pglite',
    '@electric-sql/pglite-socket',
    '@fastify/ajv-compiler',
    '@fastify/fast-json-stringify-compiler',
    '@fastify/swagger-ui',
    'node-pg-migrate',
    'pg-native',
    'pino-pretty',
  ],
  plugins: [skipCloudflareProbe, englishOnly],
  // Our modules that resolve files from import.meta.url live in src/lib/ and resolve them relative
  // to dist/lib/ (package.json, migrations/, node_modules): keep that true inside the bundle. (In
  // src/server.ts it only tells whether the file is the process's entry, which the bundle never is.)
  define: { 'import.meta.url': '__moduleUrl' },
  banner: { js: "const __moduleUrl = require('node:url').pathToFileURL(__dirname + '/lib/server.js').href;" },
});

copyFileSync(fileURLToPath(new URL('./server-loader.mjs', import.meta.url)), join(outdir, 'server.js'));
rmSync(join(outdir, 'server.js.map'), { force: true }); // tsc's, for the src/server.ts it compiled there
execFileSync(process.execPath, [join(outdir, 'server.js'), '--build-compile-cache'], { stdio: 'inherit' });
