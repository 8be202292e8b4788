// Owns opaque keyset-pagination cursors: base64url JSON that clients pass back untouched.
import { HttpProblem } from './problem.ts';

/** What a cursor position is checked against: a RegExp, or anything else with `test`. */
export interface CursorPattern {
  test(value: string): boolean;
}

const TIMESTAMPTZ_TEXT =
  /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.\d{1,6})?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/;

const isLeapYear = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysInMonth = (y: number, m: number) =>
  m === 2 ? (isLeapYear(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31;

/**
 * Postgres' text form of timestamptz (microsecond precision, so keysets never skip rows), checked
 * field by field: a cursor only ever holds a value Postgres printed, so anything its `::timestamptz`
 * cast could refuse (month 13, Feb 30, year 0000, 24:00, leap second 60, an offset of 16 h or more)
 * is a 400 here rather than a 500 there.
 */
export const PG_TIMESTAMPTZ: CursorPattern = {
  test(value: string): boolean {
    const m = TIMESTAMPTZ_TEXT.exec(value);
    if (!m) return false;
    // Groups 1-6: date and time; 7 is the offset's sign; 8-10 its hours, minutes, seconds.
    const [year, month, day, hour, minute, second, offH, offM, offS] = [1, 2, 3, 4, 5, 6, 8, 9, 10].map((i) =>
      Number(m[i] ?? 0),
    ) as [number, number, number, number, number, number, number, number, number];
    return (
      year >= 1 &&
      month >= 1 &&
      month <= 12 &&
      day >= 1 &&
      day <= daysInMonth(year, month) &&
      hour <= 23 &&
      minute <= 59 &&
      second <= 59 &&
      offH <= 15 &&
      offM <= 59 &&
      offS <= 59
    );
  },
};

export function encodeCursor(values: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

/** Decodes and checks every position against its pattern; anything else is a 400, never a SQL error. */
export function decodeCursor(cursor: string, patterns: readonly CursorPattern[]): string[] {
  let values: unknown;
  try {
    values = JSON.parse(Buffer.from(cursor, 'base64url').toString());
  } catch {
    values = null;
  }
  if (
    !Array.isArray(values) ||
    values.length !== patterns.length ||
    !values.every((v, i) => typeof v === 'string' && (patterns[i] as CursorPattern).test(v))
  ) {
    throw new HttpProblem(400, 'validation-error', 'Validation Failed', { detail: 'Invalid cursor.' });
  }
  return values as string[];
}
