// Owns reading a Dockerfile the way the builder does: parser directives, escaped line continuations,
// comments, flags, exec (JSON) form and stages; and .dockerignore matching as the builder applies it.

export interface Instruction {
  keyword: string;
  /** The arguments after the flags, continuations joined. */
  args: string;
  /** `--name=value` flags (`--mount` may repeat: the values are joined with a newline). */
  flags: Record<string, string>;
  /** The exec-form array when args is a JSON array of strings (CMD, ENTRYPOINT, RUN, HEALTHCHECK CMD). */
  json: string[] | null;
  /** 1-based line where the instruction starts. */
  line: number;
}

export interface Stage {
  index: number;
  name: string | undefined;
  /** The base: an image reference or the name of an earlier stage. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  directives: Record<string, string>;
  /** ARG instructions before the first FROM. */
  globalArgs: Instruction[];
  stages: Stage[];
}

function parseJsonArray(text: string): string[] | null {
  const t = text.trim();
  if (!t.startsWith('[')) return null;
  try {
    const value: unknown = JSON.parse(t);
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null;
  } catch {
    // The builder runs a malformed JSON array in shell form: callers see json === null.
    return null;
  }
}

function splitFlags(rest: string): { flags: Record<string, string>; args: string } {
  const flags: Record<string, string> = {};
  let remaining = rest;
  for (;;) {
    const m = /^--([a-z][a-z-]*)(?:=(\S*))?\s*/.exec(remaining);
    if (m === null) break;
    const [whole, name, value = 'true'] = m as unknown as [string, string, string | undefined];
    flags[name] = flags[name] === undefined ? value : `${flags[name]}\n${value}`;
    remaining = remaining.slice(whole.length);
  }
  return { flags, args: remaining.trim() };
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split(/\r?\n/);
  const directives: Record<string, string> = {};
  let i = 0;
  // Parser directives: `# key=value` lines at the very top, before any blank line or instruction.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(lines[i] as string);
    if (m === null) break;
    directives[(m[1] as string).toLowerCase()] = m[2] as string;
  }
  const escapeChar = directives.escape ?? '\\';

  const instructions: Instruction[] = [];
  let current: { text: string; line: number } | null = null;
  for (; i < lines.length; i++) {
    const raw = lines[i] as string;
    const trimmed = raw.trim();
    // Comment lines are removed before continuations are joined, even in the middle of one.
    if (trimmed.startsWith('#')) continue;
    if (trimmed === '' && current === null) continue;
    const continues = raw.trimEnd().endsWith(escapeChar);
    const body = continues ? raw.trimEnd().slice(0, -escapeChar.length) : raw;
    // The builder drops the escape and the newline and keeps the next line as it is.
    if (current === null) current = { text: body, line: i + 1 };
    else current.text += body;
    if (!continues) {
      const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(current.text);
      if (m === null) throw new Error(`line ${current.line}: cannot parse "${current.text}"`);
      const keyword = (m[1] as string).toUpperCase();
      const { flags, args } = splitFlags((m[2] as string).trim());
      const jsonText = keyword === 'HEALTHCHECK' ? args.replace(/^CMD\s+/i, '') : args;
      instructions.push({ keyword, args, flags, json: parseJsonArray(jsonText), line: current.line });
      current = null;
    }
  }
  if (current !== null) throw new Error(`line ${current.line}: the file ends inside a line continuation`);

  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (m === null) throw new Error(`line ${ins.line}: cannot parse FROM ${ins.args}`);
      stages.push({
        index: stages.length,
        from: m[1] as string,
        name: m[2]?.toLowerCase(),
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
      globalArgs.push(ins);
    } else {
      (stages.at(-1) as Stage).instructions.push(ins);
    }
  }
  return { directives, globalArgs, stages };
}

/** The variables an ENV instruction sets: `ENV A=1 B="x y"`, or the legacy one-pair `ENV A 1`. */
export function envPairs(ins: Instruction): [string, string][] {
  const legacy = /^([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$/s.exec(ins.args);
  if (legacy !== null) return [[legacy[1] as string, legacy[2] as string]];
  return [...ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)].map((m) => [
    m[1] as string,
    (m[2] as string).replace(/^"(.*)"$/s, '$1'),
  ]);
}

/** Splits shell-form words well enough for COPY/ADD sources and destinations (no quoting in use). */
export function words(args: string): string[] {
  const json = parseJsonArray(args);
  return json ?? args.split(/\s+/).filter((w) => w.length > 0);
}

// ---- .dockerignore ---------------------------------------------------------------------------

interface IgnorePattern {
  exclusion: boolean;
  regex: RegExp;
  source: string;
}

/** Translates one pattern the way moby/patternmatcher does: `**` spans directories, `*` and `?` do not. */
function patternRegex(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i]}`;
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end === -1) re += '\\[';
      else {
        re += pattern.slice(i, end + 1).replace('[!', '[^');
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`${re}$`);
}

function clean(path: string): string {
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

export interface DockerIgnore {
  patterns: IgnorePattern[];
  /** True when the builder leaves this path (relative to the context) out of the context. */
  ignores(path: string): boolean;
}

export function parseDockerignore(text: string): DockerIgnore {
  const patterns: IgnorePattern[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const exclusion = line.startsWith('!');
    if (exclusion) line = line.slice(1).trim();
    const cleaned = clean(line);
    if (cleaned === '') continue;
    patterns.push({ exclusion, regex: patternRegex(cleaned), source: raw.trim() });
  }
  return {
    patterns,
    ignores(path: string) {
      const file = clean(path);
      const dirs = file.split('/').slice(0, -1);
      let matched = false;
      for (const p of patterns) {
        // An inclusion only matters while unmatched, an exception only once matched (moby's order).
        if (p.exclusion !== matched) continue;
        let match = p.regex.test(file);
        for (let d = 1; !match && d <= dirs.length; d++) match = p.regex.test(dirs.slice(0, d).join('/'));
        if (match) matched = !p.exclusion;
      }
      return matched;
    },
  };
}
