// Owns the OpenAPI 3.1 document generated from the zod route schemas, /openapi.json and the /docs page.
// What an operation can answer is derived here, in one place, from the route's shape (its credential,
// scope guard, inputs, preconditions, idempotency, cache and rate limit): routes declare only what no
// shape shows (their operationId, summary, the headers their handler sets, a problem of their own).
import { STATUS_CODES } from 'node:http';
import helmet from '@fastify/helmet';
import swagger, { type SwaggerTransform, type SwaggerTransformObject } from '@fastify/swagger';
import type { FastifyInstance, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PACKAGE_LICENSE, PACKAGE_VERSION } from '../lib/version.ts';
import { API_HELMET_OPTIONS } from './security-headers.ts';

type Json = Record<string, unknown>;

interface HeaderDoc {
  description: string;
  required?: boolean;
  schema: {
    type: 'string' | 'integer';
    format?: string;
    enum?: string[];
    maxLength?: number;
    minimum?: number;
    maximum?: number;
  };
}

/** Response headers the document names, as components.headers (a route's handler may set the first ones). */
const HEADERS = {
  ETag: {
    description: 'The version of the resource: send it back in If-Match (writes) or If-None-Match (reads).',
    schema: { type: 'string', maxLength: 64 },
  },
  Location: {
    description: 'The path of the created resource.',
    schema: { type: 'string', format: 'uri-reference', maxLength: 2048 },
  },
  'Accept-Patch': {
    description: 'The patch media types this resource accepts (RFC 5789), on a 415 to a PATCH.',
    schema: { type: 'string', maxLength: 200 },
  },
  'X-Request-Id': {
    description:
      "This request's id: the caller's X-Request-Id when well formed, else a new UUID. Problem bodies carry it as requestId.",
    required: true,
    schema: { type: 'string', maxLength: 128 },
  },
  'Idempotent-Replayed': {
    description:
      '"true" when this is the stored response to an earlier request with the same Idempotency-Key (nothing was written again).',
    schema: { type: 'string', enum: ['true'] },
  },
  'X-Cache': {
    description: 'HIT when the answer came from the response cache, MISS when it was computed.',
    schema: { type: 'string', enum: ['HIT', 'MISS'] },
  },
  RateLimit: {
    description:
      'The quota left and the seconds until the bucket is full again (draft-ietf-httpapi-ratelimit-headers): "<policy>";r=<remaining>;t=<seconds>.',
    schema: { type: 'string', maxLength: 200 },
  },
  'RateLimit-Policy': {
    description: 'The quota and its window in seconds: "<policy>";q=<requests>;w=<seconds>.',
    schema: { type: 'string', maxLength: 200 },
  },
  'X-RateLimit-Limit': {
    description: 'Requests allowed in a burst.',
    schema: { type: 'integer', minimum: 1, maximum: 1_000_000 },
  },
  'X-RateLimit-Remaining': {
    description: 'Requests left before 429.',
    schema: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
  'X-RateLimit-Reset': {
    description: 'Seconds until the bucket is full again.',
    schema: { type: 'integer', minimum: 0, maximum: 2_147_483_647 },
  },
  'Retry-After': {
    description: 'Seconds to wait before retrying.',
    required: true,
    schema: { type: 'integer', minimum: 0, maximum: 2_147_483_647 },
  },
  'WWW-Authenticate': {
    description:
      'The Bearer challenge (RFC 6750): error="invalid_token" for a rejected credential; on 403, error="insufficient_scope" and the scope required.',
    schema: { type: 'string', maxLength: 500 },
  },
} satisfies Record<string, HeaderDoc>;
export type ResponseHeader = keyof typeof HEADERS;

const RATE_LIMIT_HEADERS: readonly ResponseHeader[] = [
  'RateLimit',
  'RateLimit-Policy',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
];

/** Every problem an operation can answer: a shared response each (components.responses), one body. */
const PROBLEMS = {
  400: {
    name: 'BadRequest',
    description: 'The request is malformed or fails validation: errors lists what is wrong (20 at most).',
  },
  401: {
    name: 'Unauthorized',
    description: 'No credential, or one that is malformed, unknown, expired or revoked.',
    headers: ['WWW-Authenticate'],
  },
  403: {
    name: 'Forbidden',
    description: 'The credential is valid but may not do this (the scope it lacks is in the detail).',
    headers: ['WWW-Authenticate'],
  },
  404: { name: 'NotFound', description: 'No such resource (one of another owner is not found either).' },
  409: {
    name: 'Conflict',
    description: 'A request with this Idempotency-Key is still in progress: retry once it has finished.',
  },
  412: {
    name: 'PreconditionFailed',
    description: 'If-Match does not name the current version (ETag): read the resource again.',
  },
  413: { name: 'ContentTooLarge', description: 'The body is larger than this server accepts.' },
  415: {
    name: 'UnsupportedMediaType',
    description:
      'The body is of a media type this operation does not accept (the detail lists those it does).',
    headers: ['Accept-Patch'],
  },
  422: {
    name: 'UnprocessableContent',
    description: 'This Idempotency-Key was already used with a different request.',
  },
  429: {
    name: 'TooManyRequests',
    description: 'The rate limit is spent: retry after Retry-After seconds.',
    headers: ['Retry-After', ...RATE_LIMIT_HEADERS],
  },
  500: {
    name: 'InternalServerError',
    description: 'An unexpected error: requestId finds it in the logs.',
  },
  503: {
    name: 'ServiceUnavailable',
    description: 'Overloaded, or a dependency is unavailable: retry after Retry-After seconds.',
    headers: ['Retry-After'],
  },
} as const satisfies Record<
  number,
  { name: string; description: string; headers?: readonly ResponseHeader[] }
>;
export type ProblemStatus = keyof typeof PROBLEMS;

/** The body of every error (RFC 9457 problem details), under application/problem+json. */
export const Problem = z
  .looseObject({
    type: z
      .string()
      .max(200)
      .describe(
        'What kind of problem (urn:problem-type:<code>): clients switch on this, never on title or detail.',
      ),
    title: z.string().max(200).describe('A short summary of the kind of problem, the same every time.'),
    status: z.int().min(400).max(599).describe('The HTTP status code.'),
    detail: z.string().max(2000).optional().describe('What went wrong this time.'),
    instance: z.string().max(2048).optional().describe('The path of the request.'),
    requestId: z.string().max(128).describe('The X-Request-Id of the request: quote it to support.'),
    errors: z
      .array(
        z.object({
          in: z.enum(['body', 'querystring', 'params', 'headers']).describe('The part of the request.'),
          path: z.string().max(200).describe('A JSON pointer into that part ("" for the whole).'),
          message: z.string().max(200),
        }),
      )
      .max(20)
      .optional()
      .describe('On 400: each invalid field.'),
    retryAfter: z.int().min(0).max(2_147_483_647).optional().describe('On 429: seconds to wait.'),
  })
  .meta({ id: 'Problem', description: 'Problem details (RFC 9457).' });

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the OpenAPI document cannot read from the route's shape (plugins/openapi.ts derives the rest). */
    openapi?: {
      /** Problems the handler answers itself, beyond those its shape implies (e.g. a 403 of its own). */
      problems?: readonly ProblemStatus[];
      /** Response headers the handler sets, by status. */
      headers?: Readonly<Partial<Record<number, readonly ResponseHeader[]>>>;
    };
  }
}

/** OpenAPI `security` for an authenticated route: a bearer JWT or API key, or an X-API-Key header, holding `scopes`. */
export function securityFor(scopes: readonly string[]): Record<string, string[]>[] {
  return [{ bearerAuth: [...scopes] }, { apiKey: [...scopes] }];
}

const tagDescriptions = new Map<string, string>();

/** Declares a tag and what its operations are about (listed at the top of the document); `[name]` for `tags`. */
export function openapiTag(name: string, description: string): string[] {
  tagDescriptions.set(name, description);
  return [name];
}

const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const propertiesOf = (schema: unknown): string[] =>
  isObject(schema) && isObject(schema.properties) ? Object.keys(schema.properties) : [];

/** Carries what was derived from a route to the operation it becomes; removed from the final document. */
const DERIVED = 'x-derived-from-route';
interface Derived {
  problems: number[];
  /** Headers of every success response, and by status. */
  headers: ResponseHeader[];
  headersByStatus: Partial<Record<number, readonly ResponseHeader[]>>;
  idempotent: boolean;
  /** The body schema accepts no body at all (@fastify/swagger marks every request body required). */
  optionalBody: boolean;
}

/**
 * The per-route step: zod's transform, then what the route's shape implies. A route with a credential can
 * answer 401, with a scope 403; any input 400; a body also 413 and 415; a path parameter 404; an If-Match
 * header 412; idempotency 409 and 422; a rate limit 429 (and its headers on every answer); the load
 * shedder and the database 503 (probes excepted); anything 500.
 */
function createTransform(rateLimitEnabled: boolean): SwaggerTransform {
  return (document) => {
    const out = jsonSchemaTransform(document);
    const schema: Json = { ...(out.schema ?? {}) };
    if (schema.hide) return out;
    const route: RouteOptions = document.route;
    const config = route.config ?? {};
    const security = (schema.security as Record<string, string[]>[] | undefined) ?? [];
    const cached = config.cache !== undefined && 'tag' in config.cache;
    const limited = rateLimitEnabled && config.rateLimit !== false;
    const headerNames = propertiesOf(schema.headers);

    const problems = new Set<number>([500, ...(config.openapi?.problems ?? [])]);
    if (security.length > 0) problems.add(401);
    if (security.some((requirement) => Object.values(requirement).some((scopes) => scopes.length > 0)))
      problems.add(403);
    if (schema.body !== undefined) for (const status of [400, 413, 415]) problems.add(status);
    if (schema.querystring !== undefined || schema.params !== undefined || schema.headers !== undefined)
      problems.add(400);
    if (propertiesOf(schema.params).length > 0) problems.add(404);
    if (headerNames.includes('if-match')) problems.add(412);
    if (config.idempotency) for (const status of [409, 422]) problems.add(status);
    if (limited) problems.add(429);
    // Probes opt out of load shedding (a pressureHandler of their own) and touch no dependency that fails.
    if ((config as { pressureHandler?: unknown }).pressureHandler === undefined) problems.add(503);

    if (cached)
      schema.headers = {
        type: 'object',
        ...(isObject(schema.headers) ? schema.headers : {}),
        properties: {
          ...(isObject(schema.headers) && isObject(schema.headers.properties)
            ? schema.headers.properties
            : {}),
          'cache-control': {
            type: 'string',
            maxLength: 200,
            description: 'no-cache: skip the response cache and read the current state (which refills it).',
          },
        },
      };

    const derived: Derived = {
      problems: [...problems],
      headers: [
        'X-Request-Id',
        ...(limited ? RATE_LIMIT_HEADERS : []),
        ...(cached ? (['X-Cache'] as const) : []),
        ...(config.idempotency ? (['Idempotent-Replayed'] as const) : []),
      ],
      headersByStatus: config.openapi?.headers ?? {},
      idempotent: config.idempotency === true,
      optionalBody: route.schema?.body instanceof z.ZodType && route.schema.body.safeParse(undefined).success,
    };
    return { url: out.url, schema: { ...schema, security, [DERIVED]: derived } };
  };
}

const headerRefs = (names: readonly ResponseHeader[]) =>
  Object.fromEntries(names.map((name) => [name, { $ref: `#/components/headers/${name}` }]));

function problemResponses(rateLimitEnabled: boolean) {
  return Object.fromEntries(
    Object.entries(PROBLEMS).map(([status, problem]) => {
      // Answers of a rate-limited route carry its headers; a 401 is answered before the limiter runs.
      const limited = rateLimitEnabled && status.startsWith('4') && status !== '401' && status !== '429';
      const headers: readonly ResponseHeader[] = [
        'X-Request-Id',
        ...('headers' in problem ? problem.headers : []),
        ...(limited ? RATE_LIMIT_HEADERS : []),
      ];
      return [
        problem.name,
        {
          description: problem.description,
          headers: headerRefs(headers),
          content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
        },
      ];
    }),
  );
}

const SUCCESS_DESCRIPTIONS: Record<string, string> = {
  '304': 'Not Modified: the version named in If-None-Match is current (no body).',
};

/** Each operation's derived responses and headers, by reference to the shared ones. */
function completeOperation(operation: Json): void {
  const derived = operation[DERIVED] as Derived | undefined;
  delete operation[DERIVED];
  if (derived === undefined) return;
  if (derived.optionalBody && isObject(operation.requestBody)) operation.requestBody.required = false;
  const responses = (operation.responses ?? {}) as Record<string, Json>;
  for (const [status, response] of Object.entries(responses)) {
    if (response.description === 'Default Response' || response.description === undefined)
      response.description =
        SUCCESS_DESCRIPTIONS[status] ??
        (derived.idempotent && status.startsWith('2')
          ? `${STATUS_CODES[status]}. A retry with the same Idempotency-Key gets this response again, with Idempotent-Replayed: true.`
          : (STATUS_CODES[status] ?? 'Response'));
    const names = [...derived.headers, ...(derived.headersByStatus[Number(status)] ?? [])].filter(
      (name) => name !== 'Idempotent-Replayed' || status.startsWith('2'),
    );
    response.headers = { ...headerRefs(names), ...(isObject(response.headers) ? response.headers : {}) };
  }
  for (const status of derived.problems)
    responses[status] ??= { $ref: `#/components/responses/${PROBLEMS[status as ProblemStatus].name}` };
  operation.responses = Object.fromEntries(
    Object.entries(responses).sort(([a], [b]) => Number(a) - Number(b) || a.localeCompare(b)),
  );
}

/** Calls `visit` on every object in `value`, depth first. */
function walk(value: unknown, visit: (node: Json) => void): void {
  if (Array.isArray(value)) for (const item of value) walk(item, visit);
  else if (isObject(value)) {
    visit(value);
    for (const child of Object.values(value)) walk(child, visit);
  }
}

const SCHEMA_REF = '#/components/schemas/';

/**
 * The type provider emits every registered schema twice (Name for responses, NameInput for requests):
 * keep only those referenced, and drop the Input suffix from a schema only requests use.
 */
function namedSchemas(doc: Json): void {
  const components = doc.components as Json;
  const all = (components.schemas ?? {}) as Json;
  const used = new Set<string>();
  const pending: unknown[] = [{ ...doc, components: { ...components, schemas: {} } }];
  while (pending.length > 0)
    walk(pending.pop(), (node) => {
      const ref = node.$ref;
      if (typeof ref !== 'string' || !ref.startsWith(SCHEMA_REF)) return;
      const name = ref.slice(SCHEMA_REF.length);
      if (used.has(name) || all[name] === undefined) return;
      used.add(name);
      pending.push(all[name]);
    });
  const names = new Map(
    [...used].map((name) => {
      const base = name.endsWith('Input') ? name.slice(0, -'Input'.length) : name;
      return [name, base !== name && !used.has(base) ? base : name];
    }),
  );
  components.schemas = Object.fromEntries(
    [...names].sort(([, a], [, b]) => a.localeCompare(b)).map(([name, final]) => [final, all[name]]),
  );
  // (An object can sit in two places, e.g. one body schema under two media types: renamed once.)
  walk(doc, (node) => {
    if (typeof node.$ref !== 'string' || !node.$ref.startsWith(SCHEMA_REF)) return;
    const name = node.$ref.slice(SCHEMA_REF.length);
    node.$ref = SCHEMA_REF + (names.get(name) ?? name);
  });
}

/** Integers say whether they fit in 32 bits (generators pick the type from `format`). */
function integerFormats(doc: Json): void {
  walk(doc, (node) => {
    if (node.type !== 'integer' || node.format !== undefined) return;
    const int32 = (n: unknown) => typeof n === 'number' && Math.abs(n) <= 2_147_483_647;
    node.format = int32(node.minimum) && int32(node.maximum) ? 'int32' : 'int64';
  });
}

const transformObject: SwaggerTransformObject = (documentObject) => {
  const doc = jsonSchemaTransformObject(documentObject) as Json;
  const tags = new Set<string>();
  for (const pathItem of Object.values((doc.paths ?? {}) as Record<string, Json>))
    for (const operation of Object.values(pathItem))
      if (isObject(operation)) {
        completeOperation(operation);
        for (const tag of (operation.tags as string[] | undefined) ?? []) tags.add(tag);
      }
  doc.tags = [...tags].map((name) => {
    const description = tagDescriptions.get(name);
    return description === undefined ? { name } : { name, description };
  });
  namedSchemas(doc);
  integerFormats(doc);
  return doc;
};

const DESCRIPTION = `Every error is application/problem+json (RFC 9457): switch on its \`type\`, and quote its \`requestId\` (the X-Request-Id response header) to support.

Everything under /v1 needs a credential: an API key or a JWT access token (from POST /v1/auth/token) as \`Authorization: Bearer\`, or an API key as \`X-API-Key\`. Each operation lists the scope it requires.

Requests are rate limited per credential (per address on public routes): the RateLimit headers say what is left; a 429 says when to retry (Retry-After). A create accepts an Idempotency-Key, so a retry never writes twice. Reads send an ETag and answer 304 to If-None-Match; writes take If-Match and answer 412 when the resource changed.`;

async function openapiPlugin(app: FastifyInstance) {
  const { config } = app;
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: `${config.SERVICE_NAME} API`,
        version: config.APP_VERSION ?? PACKAGE_VERSION,
        description: DESCRIPTION,
        ...(PACKAGE_LICENSE === undefined
          ? {}
          : { license: { name: PACKAGE_LICENSE, identifier: PACKAGE_LICENSE } }),
      },
      // Relative: the deployment serving this document; x-internal: its audience is not only internal.
      servers: [
        {
          url: '/',
          description: 'The deployment serving this document (local, staging or production alike).',
          'x-internal': false,
        } as { url: string; description: string },
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: `A JWT access token from POST /v1/auth/token, verified as RFC8725 advises (one algorithm, never "none"; issuer, audience and expiry checked), or an API key (${config.API_KEY_PREFIX}_...), also sent as a bearer token.`,
          },
          apiKey: {
            type: 'apiKey',
            in: 'header',
            name: 'X-API-Key',
            description: 'An API key; never together with an Authorization header.',
          },
        },
        responses: problemResponses(config.RATE_LIMIT_ENABLED),
        headers: HEADERS,
      },
    },
    transform: createTransform(config.RATE_LIMIT_ENABLED),
    transformObject,
  });
}

export default fp(openapiPlugin, { name: 'openapi' });

/** GET /openapi.json, and the /docs UI when DOCS_ENABLED (its own context: relaxed CSP there only). */
export async function openapiRoutes(app: FastifyInstance) {
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  if (!app.config.DOCS_ENABLED) return;
  // Loaded only when the page is on (never in production by default): no start-up cost otherwise.
  const { default: swaggerUi } = await import('@fastify/swagger-ui');
  // A nested @fastify/helmet: its hook runs after the API's in this context only, so only the page's own
  // routes get a CSP that lets swagger-ui's scripts and styles load; every other header stays the API's.
  await app.register(async (docs) => {
    await docs.register(helmet, {
      ...API_HELMET_OPTIONS,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'", "'unsafe-inline'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          frameAncestors: ["'none'"],
        },
      },
    });
    await docs.register(swaggerUi, { routePrefix: '/docs' });
  });
}
