// Owns every error response: one handler turns any error, 404, 405 and 501 into application/problem+json,
// and so do the framework's own rejections (bad URLs, over-long path parameters, unparseable HTTP) and
// the media-type gate (415 for a body type the route does not declare).
import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type {
  ConnectionError,
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
  preHandlerHookHandler,
  preParsingHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import helmet from 'helmet';
import { AccessLogController } from '../lib/access-log.ts';
import { isDatabaseTimeout, isDatabaseUnavailable } from '../lib/db-errors.ts';
import { genReqId } from '../lib/logger-options.ts';
import { HttpProblem, PROBLEM_JSON, type ProblemBody, problemType } from '../lib/problem.ts';
import { API_HELMET_OPTIONS } from './security-headers.ts';

/** A validation answer lists this many problems at most, each message and path cut to a bounded length. */
const MAX_LISTED_ERRORS = 20;
const MAX_ERROR_TEXT = 200;

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

interface ProblemKind {
  status: number;
  code: string;
  title: string;
  detail?: string;
}

/** Errors the router raises before any route runs (Fastify's `frameworkErrors`). */
const ROUTER_ERRORS: Record<string, ProblemKind> = {
  FST_ERR_BAD_URL: {
    status: 400,
    code: 'bad-request',
    title: 'Bad Request',
    detail: 'The request path is not a valid URL.',
  },
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 414,
    code: 'uri-too-long',
    title: 'URI Too Long',
    detail: 'A path segment is longer than this server accepts.',
  },
};
const INTERNAL_ERROR: ProblemKind = { status: 500, code: 'internal-error', title: 'Internal Server Error' };

/** Errors Node's HTTP parser raises on a connection before there is a request (Fastify's `clientErrorHandler`). */
const CONNECTION_ERRORS: Record<string, ProblemKind> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'request-header-fields-too-large',
    title: 'Request Header Fields Too Large',
    detail: 'The request headers are larger than this server accepts.',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    status: 413,
    code: 'payload-too-large',
    title: 'Payload Too Large',
    detail: 'The chunk extensions are larger than this server accepts.',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'request-timeout',
    title: 'Request Timeout',
    detail: 'The request was not received in time.',
  },
};
const MALFORMED_REQUEST: ProblemKind = {
  status: 400,
  code: 'bad-request',
  title: 'Bad Request',
  detail: 'The request is not valid HTTP/1.1.',
};
const NOT_IMPLEMENTED: ProblemKind = {
  status: 501,
  code: 'not-implemented',
  title: 'Not Implemented',
  detail: 'This server does not implement the request method.',
};
/** A well-formed request line: when only its method is unknown, the answer is 501 (RFC 9110 §9.1), not 400. */
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [!-~]+ HTTP\/1\.[01]\r?\n/;

/**
 * helmet's headers for the API policy, computed once: the answers written outside Fastify's request
 * lifecycle (router and connection errors) carry the same headers as every other response. The policy
 * has no per-request parts (no nonces), so one run over a stand-in response gives them all.
 */
const SECURITY_HEADERS: Record<string, string> = (() => {
  const headers: Record<string, string> = {};
  const collect = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: () => {},
  };
  helmet(API_HELMET_OPTIONS)({} as IncomingMessage, collect as unknown as ServerResponse, () => {});
  return headers;
})();

/** A problem for a request whose path or headers could not be read: no `instance`, nothing of the input echoed. */
function bareProblem(kind: ProblemKind, requestId: string): string {
  const body: ProblemBody = {
    type: problemType(kind.code),
    title: kind.title,
    status: kind.status,
    ...(kind.detail === undefined ? {} : { detail: kind.detail }),
    requestId,
  };
  return JSON.stringify(body);
}

/** A complete HTTP/1.1 response for a raw socket: the parser gave up on the connection, so it then closes. */
function rawProblemResponse(kind: ProblemKind, requestId: string): string {
  const body = bareProblem(kind, requestId);
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    date: new Date().toUTCString(),
    'x-request-id': requestId,
    'content-type': PROBLEM_JSON,
    'content-length': String(Buffer.byteLength(body)),
    connection: 'close',
  };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
  return `HTTP/1.1 ${kind.status} ${STATUS_CODES[kind.status]}\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

const accessLog = new AccessLogController();

/**
 * Fastify's `frameworkErrors` option: a path the router cannot decode (FST_ERR_BAD_URL, e.g. `/v1/items/%`)
 * is 400, a path parameter over the router's `maxParamLength` (FST_ERR_MAX_PARAM_LENGTH) is 414, and a
 * failing async route constraint (FST_ERR_ASYNC_CONSTRAINT; none are declared) is 500. These requests
 * never reach a route or its hooks, so the request id, security headers and access line are set here.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const kind = (error.code ? ROUTER_ERRORS[error.code] : undefined) ?? INTERNAL_ERROR;
  if (kind.status >= 500) request.log.error({ err: error }, 'unhandled framework error');
  reply.raw.once('finish', () => accessLog.requestCompleted(null, request, reply));
  reply
    .headers(SECURITY_HEADERS)
    .header('x-request-id', request.id)
    .code(kind.status)
    .type(PROBLEM_JSON)
    .send(bareProblem(kind, request.id));
}

/**
 * Fastify's `clientErrorHandler` option (Node's `clientError` event): bytes Node's parser rejects before
 * there is a request. Headers over the size limit are 431, a request that is not HTTP/1.1 (a garbled
 * request line, both Content-Length and Transfer-Encoding, a bad header) is 400, a well-formed request
 * line with a method Node does not know is 501, a request not received within REQUEST_TIMEOUT_MS is 408.
 * As Node's own handler: a complete response, then the socket is destroyed; nothing is written when the
 * socket is gone or a response has already started on it (the client would read a corrupt response).
 */
export function clientErrorHandler(this: FastifyInstance, error: ConnectionError, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const raw = error.rawPacket as unknown;
  const packet = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0);
  const kind =
    CONNECTION_ERRORS[error.code] ??
    (error.code === 'HPE_INVALID_METHOD' && REQUEST_LINE.test(packet.toString('latin1', 0, 8192))
      ? NOT_IMPLEMENTED
      : MALFORMED_REQUEST);
  const requestId = randomUUID();
  // The packet is never logged: it holds the request's headers, credentials included.
  this.log.info({ requestId, statusCode: kind.status, code: error.code }, 'client error');
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) socket.write(rawProblemResponse(kind, requestId));
  socket.destroy();
}

/** CONNECT is routed to the server's 'connect' event, never to Fastify: this server is no proxy, so 501. */
function onConnectRequest(this: FastifyInstance, request: IncomingMessage, socket: Duplex): void {
  const requestId = genReqId(request);
  this.log.info({ requestId, method: request.method, statusCode: 501 }, 'request completed');
  if (socket.writable) socket.write(rawProblemResponse(NOT_IMPLEMENTED, requestId));
  socket.destroy();
}

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

/** Bounded text for a validation entry: a client's input (a key, a path) may be as long as the body. */
function clip(text: string, max = MAX_ERROR_TEXT): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** zod's unrecognized-keys message names every key: name the first few and count the rest. */
function issueMessage(issue: FastifySchemaValidationError): string {
  const keys = issue.params.keys;
  if (issue.keyword === 'unrecognized_keys' && Array.isArray(keys)) {
    const shown = keys.slice(0, 5).map((k) => JSON.stringify(clip(String(k), 40)));
    const more = keys.length > shown.length ? ` and ${keys.length - shown.length} more` : '';
    return `Unrecognized key${keys.length === 1 ? '' : 's'}: ${shown.join(', ')}${more}`;
  }
  return clip(issue.message ?? 'Invalid value');
}

const DEFAULT_CONSUMES = ['application/json'];

/**
 * A route with a body schema accepts the media types its `schema.consumes` declares (application/json
 * unless it says otherwise; parameters such as charset ignored, case-insensitive); any other type is 415
 * before the body is read. It runs after onRequest (authentication first), before the route's own preParsing hooks.
 */
function mediaTypeGate(accepted: readonly string[], isPatch: boolean): preParsingHookHandler {
  const types = new Set(accepted);
  const detail = `This endpoint accepts ${accepted.join(' or ')}.`;
  // RFC 5789 §2.2: a 415 to a PATCH names the patch formats the resource accepts.
  const headers: Record<string, string> = isPatch ? { 'accept-patch': accepted.join(', ') } : {};
  return (request, _reply, payload, done) => {
    const header = request.headers['content-type'];
    // Without a Content-Type, Fastify itself answers: no body is validated, a body is 415.
    if (header === undefined || types.has((header.split(';', 1)[0] ?? '').trim().toLowerCase())) {
      done(null, payload);
      return;
    }
    done(new HttpProblem(415, 'unsupported-media-type', 'Unsupported Media Type', { detail, headers }));
  };
}

export interface ErrorHandlerOptions {
  /** Runs before the 404/405 answer (the rate limiter, so scanners pay for unknown URLs too). */
  notFoundPreHandler?: preHandlerHookHandler;
}

async function errorHandlerPlugin(app: FastifyInstance, options: ErrorHandlerOptions) {
  const methods = createMethodIndex();
  app.addHook('onRoute', function onRoute(route) {
    const routeMethods = Array.isArray(route.method) ? route.method : [route.method];
    methods.add(route.url, routeMethods);
    if (route.schema?.body === undefined) return;
    const consumes = (route.schema.consumes ?? DEFAULT_CONSUMES).map((type) => type.toLowerCase());
    for (const type of consumes)
      if (!this.hasContentTypeParser(type))
        throw new Error(
          `${route.url} declares that it consumes ${type}, but no content-type parser reads it`,
        );
    const gate = mediaTypeGate(consumes, routeMethods.includes('PATCH'));
    route.preParsing = [gate, ...[route.preParsing ?? []].flat()];
  });

  app.server.on('connect', onConnectRequest.bind(app));

  // Methods Fastify can route (Node's parser knows more: PROPFIND, MKCOL...); computed after start-up,
  // when every addHttpMethod has run.
  let routable: Set<string> | undefined;
  app.setNotFoundHandler({ preHandler: options.notFoundPreHandler }, (request, reply) => {
    routable ??= new Set(app.supportedMethods);
    if (!routable.has(request.method)) {
      const { status, code, title, detail } = NOT_IMPLEMENTED;
      return sendProblem(request, reply, status, code, title, detail);
    }
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
      // At most MAX_LISTED_ERRORS entries, each bounded: a body of 50,000 bad values answers in a few KB.
      const where = error.validationContext ?? 'request';
      const count = error.validation.length;
      const errors = error.validation.slice(0, MAX_LISTED_ERRORS).map((v) => ({
        in: where,
        path: clip(v.instancePath),
        message: issueMessage(v),
      }));
      const detail =
        count > MAX_LISTED_ERRORS
          ? `Invalid ${where}: ${count} problems; the first ${MAX_LISTED_ERRORS} are listed.`
          : `Invalid ${where}.`;
      return sendProblem(request, reply, 400, 'validation-error', 'Validation Failed', detail, { errors });
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
