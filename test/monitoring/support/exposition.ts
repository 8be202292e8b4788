// Parses the Prometheus text exposition format (what /metrics answers) into series names and their labels.

export interface SeriesInfo {
  /** Every label name seen on this series name, with every value seen. */
  labels: Map<string, Set<string>>;
  samples: number;
}

/** Series name (as stored: histograms give _bucket/_sum/_count) -> labels and values seen. */
export type Exposition = Map<string, SeriesInfo>;

function parseLabels(line: string, start: number): { labels: [string, string][]; end: number } {
  const labels: [string, string][] = [];
  let i = start + 1;
  for (;;) {
    while (line[i] === ' ') i++;
    if (line[i] === '}') return { labels, end: i + 1 };
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i))?.[0];
    if (!name || line[i + name.length] !== '=' || line[i + name.length + 1] !== '"')
      throw new Error(`bad label at ${i}: ${line}`);
    i += name.length + 2;
    let value = '';
    while (line[i] !== '"') {
      if (i >= line.length) throw new Error(`unterminated label value: ${line}`);
      if (line[i] === '\\') {
        const e = line[i + 1];
        value += e === 'n' ? '\n' : e;
        i += 2;
      } else {
        value += line[i];
        i++;
      }
    }
    i++;
    labels.push([name, value]);
    while (line[i] === ' ') i++;
    if (line[i] === ',') i++;
    else if (line[i] !== '}') throw new Error(`expected "," or "}" at ${i}: ${line}`);
  }
}

export function parseExposition(text: string): Exposition {
  const out: Exposition = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`bad sample line: ${line}`);
    let labels: [string, string][] = [];
    let rest = line.slice(name.length);
    if (rest.startsWith('{')) {
      const parsed = parseLabels(line, name.length);
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    const value = rest.trim().split(/\s+/)[0] ?? '';
    if (!/^([-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)|[-+]?Inf|NaN)$/.test(value))
      throw new Error(`bad sample value: ${line}`);
    let info = out.get(name);
    if (!info) {
      info = { labels: new Map(), samples: 0 };
      out.set(name, info);
    }
    info.samples++;
    for (const [k, v] of labels) {
      let values = info.labels.get(k);
      if (!values) {
        values = new Set();
        info.labels.set(k, values);
      }
      values.add(v);
    }
  }
  return out;
}
