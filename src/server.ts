// Owns the process: load config, build the app, listen, and drain gracefully on SIGTERM/SIGINT.
import { realpathSync } from 'node:fs';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, loadDotEnv, maskConfig } from './config.js';
import { startMetricsServer } from './plugins/metrics.js';

export interface RunOptions {
  /** How dist/server.js compiled the bundle: with the build's code cache or not (for the ready line). */
  compileCache?: 'used' | 'rejected' | 'none' | 'off';
}

export async function runServer(options: RunOptions = {}): Promise<void> {
  loadDotEnv();

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }

  const app = await buildApp(config);
  app.log.info({ config: maskConfig(config) }, 'configuration loaded');

  let metricsServer: Server | undefined;
  try {
    await app.listen({ host: config.HOST, port: config.PORT });
    if (config.METRICS_PORT !== undefined) {
      metricsServer = await startMetricsServer(app.metrics.registry, config.HOST, config.METRICS_PORT);
      app.log.info({ port: config.METRICS_PORT }, 'metrics listener started');
    }
  } catch (err) {
    app.log.fatal({ err }, 'failed to start');
    await app.close().catch(() => {});
    process.exit(1);
  }
  // performance.now() counts from process start, so this includes module loading.
  app.log.info({ startupMs: Math.round(performance.now()), ...options }, 'ready');

  let shuttingDown = false;

  async function shutdown(signal: NodeJS.Signals) {
    if (shuttingDown) {
      app.log.error({ signal }, 'second signal during shutdown: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    // Readiness turns 503 at once; load balancers stop routing here during the delay.
    app.lifecycle.draining = true;
    app.log.info({ signal, delayMs: config.SHUTDOWN_DELAY_MS }, 'shutdown: readiness now failing');
    const deadline = setTimeout(() => {
      app.log.error({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'shutdown: timed out, exiting');
      process.exit(1);
    }, config.SHUTDOWN_DELAY_MS + config.SHUTDOWN_TIMEOUT_MS);
    deadline.unref();

    await new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DELAY_MS));
    app.log.info('shutdown: closing listener and draining in-flight requests');
    try {
      // Stops accepting, waits for in-flight requests, closes idle keep-alive sockets, then runs
      // onClose hooks: postgres pool, Redis, embedded database (each logs its step).
      await app.close();
      if (metricsServer) await new Promise((resolve) => metricsServer?.close(resolve));
      app.log.info('shutdown: complete');
      process.exit(0);
    } catch (err) {
      app.log.error({ err }, 'shutdown: failed');
      process.exit(1);
    }
  }

  process.on('SIGTERM', (s) => void shutdown(s));
  process.on('SIGINT', (s) => void shutdown(s));
}

/** Is this file the process's entry script (tsx src/server.ts), rather than imported? */
function isEntry(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false; // argv[1] is no file: not started as a script
  }
}

// Run directly (`tsx src/server.ts`, `npm run dev`); dist/server.js loads the bundle and calls runServer.
if (isEntry()) void runServer();
