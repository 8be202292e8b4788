// Owns the access log: Fastify's LogController made to write exactly one JSON line per request.
import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';

const SENSITIVE_PARAM = /([?&](?:[^=&]*(?:token|key|secret|password|auth)[^=&]*)=)[^&]*/gi;

/** Query strings are logged, but values of credential-like parameters are masked. */
export function maskQuery(url: string): string {
  return url.includes('?') ? url.replace(SENSITIVE_PARAM, '$1[redacted]') : url;
}

export class AccessLogController extends LogController {
  constructor() {
    super({ requestIdLogLabel: 'requestId' });
  }

  /** Nothing on arrival: the completed line carries everything, so a request costs one line. */
  override incomingRequest(): void {}

  /** Unmatched routes are logged by requestCompleted with their 404 status. */
  override routeNotFound(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const status = reply.statusCode;
    const line = {
      method: request.method,
      url: maskQuery(request.url),
      statusCode: status,
      durationMs: Math.round(reply.elapsedTime * 100) / 100,
      remoteAddress: request.ip,
      ...(error ? { err: error } : {}),
    };
    if (status >= 500 || error) reply.log.error(line, 'request completed');
    else reply.log.info(line, 'request completed');
  }
}
