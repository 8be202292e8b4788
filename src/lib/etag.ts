// Owns entity tags for optimistic concurrency: formatting and matching If-Match / If-None-Match.

/** A strong ETag from a row version: "v3". */
export const etagOf = (version: number): string => `"v${version}"`;

/** True when the header (a list of tags, or *) matches `etag`; weak comparison as RFC 9110 allows for GET. */
export function matches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const trimmed = header.trim();
  if (trimmed === '*') return true;
  return trimmed.split(',').some((tag) => {
    const t = tag.trim();
    return (t.startsWith('W/') ? t.slice(2) : t) === etag;
  });
}

/** The version an If-Match header names, when it names exactly one of ours; undefined when absent. */
export function versionFromIfMatch(header: string | undefined): number | undefined | 'any' | 'invalid' {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (trimmed === '*') return 'any';
  const m = /^"v(\d{1,9})"$/.exec(trimmed);
  return m ? Number(m[1]) : 'invalid';
}
