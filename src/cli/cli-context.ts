// Owns what every CLI command starts from: config from the environment and a database URL (real or embedded).
import { type Config, ConfigError, type LoadOptions, loadConfig, loadDotEnv } from '../config.ts';
import { startEmbeddedPostgres } from '../lib/embedded-postgres.ts';

export interface CliContext {
  config: Config;
  databaseUrl: string;
  /** Stops the embedded database if this command started it. */
  done(): Promise<void>;
}

export function fail(message: string, code = 1): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

export async function cliContext(options: LoadOptions = {}): Promise<CliContext> {
  loadDotEnv();
  let config: Config;
  try {
    config = loadConfig(process.env, options);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 78);
    throw err;
  }
  if (config.DATABASE_URL) return { config, databaseUrl: config.DATABASE_URL, done: async () => {} };
  // Joins the dev server's embedded database when it runs, otherwise opens the directory itself.
  const embedded = await startEmbeddedPostgres(config.EMBEDDED_DB_DIR, config.EMBEDDED_DB_PORT);
  return { config, databaseUrl: embedded.url, done: () => embedded.stop() };
}

/** Parses `--name value` pairs and positionals; `--flag` alone is "true". */
export function parseArgs(argv: string[]): { flags: Record<string, string>; positionals: string[] } {
  const flags: Record<string, string> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg.startsWith('--')) {
      const [key, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
      if (inline !== undefined) flags[key] = inline;
      else if (argv[i + 1] !== undefined && !(argv[i + 1] as string).startsWith('--'))
        flags[key] = argv[++i] as string;
      else flags[key] = 'true';
    } else positionals.push(arg);
  }
  return { flags, positionals };
}
