// Owns opaque keyset-pagination cursors: base64url JSON that clients pass back untouched.
import { HttpProblem } from './problem.ts';

/** Postgres' text form of timestamptz (microsecond precision, so keysets never skip rows). */
export const PG_TIMESTAMPTZ = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d(:\d\d){0,2}$/;

export function encodeCursor(values: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

/** Decodes and checks every position against its pattern; anything else is a 400, never a SQL error. */
export function decodeCursor(cursor: string, patterns: readonly RegExp[]): string[] {
  let values: unknown;
  try {
    values = JSON.parse(Buffer.from(cursor, 'base64url').toString());
  } catch {
    values = null;
  }
  if (
    !Array.isArray(values) ||
    values.length !== patterns.length ||
    !values.every((v, i) => typeof v === 'string' && (patterns[i] as RegExp).test(v))
  ) {
    throw new HttpProblem(400, 'validation-error', 'Validation Failed', { detail: 'Invalid cursor.' });
  }
  return values as string[];
}
