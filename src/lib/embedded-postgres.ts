// Owns the embedded development database: PGlite served over the Postgres wire protocol on loopback.
import { mkdirSync } from 'node:fs';
import net from 'node:net';

export interface EmbeddedPostgres {
  url: string;
  /** True when this process started the server (and so must stop it); false when it joined one. */
  owned: boolean;
  stop(): Promise<void>;
}

function isListening(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts PGlite on `dataDir` and serves it on 127.0.0.1:`port` (0 picks a free port). When another
 * process of this project already serves the embedded database on that port (the dev server while
 * a CLI runs), it is joined instead: PGlite's data directory has a single owner.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number): Promise<EmbeddedPostgres> {
  const host = '127.0.0.1';
  if (port !== 0 && (await isListening(port, host))) {
    return { url: `postgres://postgres@${host}:${port}/postgres`, owned: false, stop: async () => {} };
  }
  mkdirSync(dataDir, { recursive: true });
  // Loaded on demand: only the embedded default needs PGlite.
  const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('@electric-sql/pglite-socket'),
  ]);
  const db = await PGlite.create({ dataDir });
  const server = new PGLiteSocketServer({ db, host, port, maxConnections: 100 });
  await server.start();
  const address = server.getServerConn();
  const actualPort = Number(address.split(':').pop());
  return {
    url: `postgres://postgres@${host}:${actualPort}/postgres`,
    owned: true,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
