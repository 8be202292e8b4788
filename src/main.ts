// The process entry (`npm start`, the image's CMD): Node's compile cache on, then the server.
import module from 'node:module';

// Every module loaded after this line is compiled from an on-disk V8 code cache when one matches
// (NODE_COMPILE_CACHE, or a folder under the OS temp dir): the next start skips most parsing and
// compiling. The image ships the cache warm. A cache that cannot be used or written is never fatal.
const compileCache = module.enableCompileCache();

// OpenTelemetry, only when an OTLP endpoint is configured (src/tracing.ts): its loader hook must be in
// place before the app's modules (pg, ioredis) are imported, so the server is imported after it.
const { startTracing } = await import('./tracing.ts');
const tracing = await startTracing();

const { runServer } = await import('./server.ts');
await runServer({ compileCacheDir: compileCache.directory, tracing });
