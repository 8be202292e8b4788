// The control: bare Fastify 5 (logger off, no plugins) answering the service's paths with its captured bodies.
//
// Run by the bench as `node bench/control-server.ts <routes.json>` with PORT set. Each
// route answers the exact bytes the real service answered, so the two differ only in the work done.
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';

export interface ControlRoute {
  method: 'GET' | 'POST';
  /** A Fastify route pattern, e.g. /v1/items/:id. */
  url: string;
  status: number;
  body: string;
}

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: control-server.ts <routes.json>\n');
  process.exit(2);
}
const routes = JSON.parse(readFileSync(file, 'utf8')) as ControlRoute[];

const app = Fastify({ logger: false });
for (const r of routes) {
  app.route({
    method: r.method,
    url: r.url,
    handler: (_request, reply) => {
      reply.code(r.status).type('application/json; charset=utf-8').send(r.body);
    },
  });
}

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });

const stop = () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
