// dist/server.js: loads the bundled server (server.bundle.cjs) with V8's code cache, then runs it.
//
// Copied here by scripts/bundle.mjs, which also writes server.bundle.cache: V8's compiled code for
// the bundle, made at build time by `node dist/server.js --build-compile-cache` (the bundle's
// modules evaluated, nothing started: keep module top-level code free of side effects, since the
// build runs it). With it V8 skips parsing and compiling the ~2 MB bundle and most functions that
// start-up runs: about a third of the start-to-ready time. The cache starts with a SHA-256 of the
// Node.js version and the exact script text, so it is only ever used for what it was made from;
// V8 itself also rejects it under other V8 flags. It is compiled code: protect it like the bundle
// (root-owned and read-only in the image). Without a usable cache the bundle is
// compiled as usual; the `ready` log line says which (`compileCache`: used, rejected, none, or off
// under --enable-source-maps).
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const here = dirname(fileURLToPath(import.meta.url));
const bundlePath = join(here, 'server.bundle.cjs');
const cachePath = join(here, 'server.bundle.cache');
const building = process.argv.includes('--build-compile-cache');
// On Node 20, import() inside a script compiled from a code cache fails; the packages that stay
// outside the bundle (src/lib/load-module.ts) are imported here instead.
const loadModule = (specifier) => import(specifier);

// CommonJS's wrapper (plus __loadModule), on the bundle's first line so line numbers stay the bundle's.
const WRAPPER = '(function (exports, require, module, __filename, __dirname, __loadModule) {';

/** Compiles and evaluates the bundle; the file buffers are dropped on return (idle RSS). */
function load() {
  const source = readFileSync(bundlePath);
  // The cache is bytecode for this exact script text (wrapper included) on this Node.js.
  const digest = createHash('sha256').update(`${process.version}\0${WRAPPER}`).update(source).digest();
  let cachedData;
  if (!building) {
    try {
      const file = readFileSync(cachePath);
      if (file.subarray(0, digest.length).equals(digest)) cachedData = file.subarray(digest.length);
    } catch {
      // no cache: compile as usual
    }
  }
  const script = new vm.Script(`${WRAPPER}${source.toString('latin1')}\n})`, {
    filename: bundlePath,
    cachedData,
  });
  const bundle = { exports: {} };
  script.runInThisContext()(bundle.exports, createRequire(bundlePath), bundle, bundlePath, here, loadModule);
  if (building) {
    const tmp = `${cachePath}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.concat([digest, script.createCachedData()]));
    renameSync(tmp, cachePath);
    process.exit(0);
  }
  const compileCache = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'used';
  return { runServer: bundle.exports.runServer, compileCache };
}

// Node maps stack traces through source maps only for modules it loads itself: with
// --enable-source-maps the bundle is required the ordinary way, without the code cache.
const { runServer, compileCache } =
  process.sourceMapsEnabled && !building
    ? { runServer: createRequire(import.meta.url)(bundlePath).runServer, compileCache: 'off' }
    : load();
await runServer({ compileCache });
