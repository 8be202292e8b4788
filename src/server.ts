// Owns the process: load config, build the app, listen, and drain gracefully on SIGTERM/SIGINT.
import type { Server } from 'node:http';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig, loadDotEnv, maskConfig } from './config.ts';
import { startMetricsServer } from './plugins/metrics.ts';
import type { Tracing } from './tracing.ts';

export interface RunOptions {
  /** Where Node's compile cache lives, when src/main.ts could enable it (reported on the ready line). */
  compileCacheDir?: string | undefined;
  /** OpenTelemetry, when src/main.ts started it: its queued spans are exported on shutdown. */
  tracing?: Tracing | undefined;
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

  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    app = await buildApp(config);
  } catch (err) {
    // One line that says what failed (the database, a plugin), not a stack trace across the screen.
    const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    process.stderr.write(`failed to start: ${reason}\n`);
    process.exit(1);
  }
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
  app.log.info(
    { startupMs: Math.round(performance.now()), compileCacheDir: options.compileCacheDir ?? null },
    'ready',
  );

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
    // A keep-alive connection whose request finishes during the drain turns idle afterwards, and
    // server.close() closes idle connections only once, at its start: sweep them until it returns,
    // or one such connection would hold the drain until its keep-alive timeout.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    sweep.unref();
    try {
      // Stops accepting, waits for in-flight requests, closes idle keep-alive sockets, then runs
      // onClose hooks: postgres pool, Redis, embedded database (each logs its step).
      await app.close();
      clearInterval(sweep);
      if (metricsServer) await new Promise((resolve) => metricsServer?.close(resolve));
      // After the drain: the spans of the last requests are in the batch; export them before exiting.
      if (options.tracing) {
        await options.tracing.shutdown();
        app.log.info('shutdown: traces flushed');
      }
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
