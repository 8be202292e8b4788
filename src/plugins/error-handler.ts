// Owns every error response: one handler turns any error, 404 and 405 into application/problem+json.
import { STATUS_CODES } from 'node:http';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  preHandlerHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { isDatabaseTimeout, isDatabaseUnavailable } from '../lib/db-errors.ts';
import { HttpProblem, type ProblemBody, problemType } from '../lib/problem.ts';

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

/** Framework errors whose messages are written for clients and safe to show. */
const CLIENT_ERRORS: Record<string, { status: number; code: string; title: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload-too-large', title: 'Payload Too Large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: 'unsupported-media-type',
    title: 'Unsupported Media Type',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'bad-request', title: 'Bad Request' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'malformed-body', title: 'Malformed Body' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed-body', title: 'Malformed Body' },
};

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: string,
  title: string,
  detail?: string,
  extensions?: Record<string, unknown>,
): FastifyReply {
  const body: ProblemBody = {
    type: problemType(code),
    title,
    status,
    ...(detail === undefined ? {} : { detail }),
    instance: request.url.split('?', 1)[0] ?? '/',
    requestId: request.id,
    ...extensions,
  };
  return reply.code(status).type(PROBLEM_JSON).send(JSON.stringify(body));
}

/** Route patterns by method, to answer 405 (with Allow) rather than 404 for a known path. */
function createMethodIndex() {
  const patterns: { regex: RegExp; methods: Set<string> }[] = [];
  const byUrl = new Map<string, Set<string>>();
  return {
    add(url: string, methods: string[]) {
      let set = byUrl.get(url);
      if (!set) {
        set = new Set();
        byUrl.set(url, set);
        const source = url
          .split('/')
          .map((seg) =>
            seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
          )
          .join('/');
        patterns.push({ regex: new RegExp(`^${source}/?$`), methods: set });
      }
      for (const m of methods) set.add(m);
    },
    allowed(path: string): string[] {
      const out = new Set<string>();
      for (const p of patterns) if (p.regex.test(path)) for (const m of p.methods) out.add(m);
      return [...out];
    },
  };
}

export interface ErrorHandlerOptions {
  /** Runs before the 404/405 answer (the rate limiter, so scanners pay for unknown URLs too). */
  notFoundPreHandler?: preHandlerHookHandler;
}

async function errorHandlerPlugin(app: FastifyInstance, options: ErrorHandlerOptions) {
  const methods = createMethodIndex();
  app.addHook('onRoute', (route) => {
    methods.add(route.url, Array.isArray(route.method) ? route.method : [route.method]);
  });

  app.setNotFoundHandler({ preHandler: options.notFoundPreHandler }, (request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '/';
    const allowed = methods.allowed(path);
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      return sendProblem(
        request,
        reply,
        405,
        'method-not-allowed',
        'Method Not Allowed',
        `${request.method} is not allowed here.`,
      );
    }
    return sendProblem(
      request,
      reply,
      404,
      'not-found',
      'Not Found',
      `No route for ${request.method} ${path}.`,
    );
  });

  app.setErrorHandler((error: FastifyError | HttpProblem, request, reply) => {
    if (error instanceof HttpProblem) {
      if (error.statusCode >= 500) request.log.error({ err: error.cause ?? error }, error.message);
      reply.headers(error.headers);
      return sendProblem(
        request,
        reply,
        error.statusCode,
        error.code,
        error.title,
        error.detail,
        error.extensions,
      );
    }

    if (hasZodFastifySchemaValidationErrors(error)) {
      const where = error.validationContext ?? 'request';
      const errors = error.validation.map((v) => ({
        in: where,
        path: v.instancePath,
        message: v.message,
      }));
      return sendProblem(request, reply, 400, 'validation-error', 'Validation Failed', `Invalid ${where}.`, {
        errors,
      });
    }

    if (error.code === 'FST_UNDER_PRESSURE') {
      // under-pressure has already set Retry-After.
      return sendProblem(
        request,
        reply,
        503,
        'overloaded',
        'Service Unavailable',
        'The server is overloaded; retry later.',
      );
    }

    const known = error.code ? CLIENT_ERRORS[error.code] : undefined;
    if (known) return sendProblem(request, reply, known.status, known.code, known.title, error.message);

    if (isDatabaseUnavailable(error) || isDatabaseTimeout(error)) {
      request.log.error({ err: error }, 'database unavailable');
      reply.header('retry-after', '5');
      return sendProblem(
        request,
        reply,
        503,
        'service-unavailable',
        'Service Unavailable',
        'A dependency is temporarily unavailable; retry later.',
      );
    }

    const status = (error as FastifyError).statusCode ?? 500;
    if (status >= 400 && status < 500) {
      // Fastify's own 4xx errors (prototype poisoning, bad headers, rate limit...) carry client-safe messages.
      const title = httpTitle(status);
      return sendProblem(
        request,
        reply,
        status,
        title.toLowerCase().replaceAll(' ', '-'),
        title,
        error.message,
      );
    }

    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(request, reply, 500, 'internal-error', 'Internal Server Error');
  });
}

/** The standard reason phrase (Node's own table), for framework 4xx errors without a problem type of ours. */
function httpTitle(status: number): string {
  return STATUS_CODES[status] ?? 'Client Error';
}

export default fp(errorHandlerPlugin, { name: 'error-handler' });
