// Owns the RFC 9457 problem details shape and the error class routes throw to produce one.

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** The request's path; left out of answers to requests whose path or headers could not be read safely. */
  instance?: string;
  requestId: string;
  [extension: string]: unknown;
}

export const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

/** Stable problem type URIs: clients switch on these, never on titles or details. */
export const problemType = (code: string): string => `urn:problem-type:${code}`;

export interface HttpProblemOptions {
  detail?: string;
  headers?: Record<string, string>;
  /** Extra members, e.g. `errors` for validation or `retryAfter` for 429. */
  extensions?: Record<string, unknown>;
  cause?: unknown;
}

/** Throw from a route or hook to answer with a problem+json body; `code` becomes the stable type. */
export class HttpProblem extends Error {
  readonly statusCode: number;
  readonly code: string;
  readonly title: string;
  readonly headers: Record<string, string>;
  readonly extensions: Record<string, unknown>;
  readonly detail: string | undefined;

  constructor(statusCode: number, code: string, title: string, options: HttpProblemOptions = {}) {
    super(options.detail ?? title, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HttpProblem';
    this.statusCode = statusCode;
    this.code = code;
    this.title = title;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }
}

export const notFound = (detail = 'The requested resource does not exist.') =>
  new HttpProblem(404, 'not-found', 'Not Found', { detail });

export const serviceUnavailable = (detail: string, retryAfterSeconds: number) =>
  new HttpProblem(503, 'service-unavailable', 'Service Unavailable', {
    detail,
    headers: { 'retry-after': String(retryAfterSeconds) },
  });
