// A PromQL parser (Prometheus 2.x/3.x grammar: selectors, functions, aggregations, binary operators with
// vector matching, subqueries, offset and @), a printer in Prometheus' own canonical form (so the
// end-to-end test can compare every parse with Prometheus' /api/v1/format_query), and the label analysis
// the tests run over it: which metrics a query selects and which labels it relies on.

export interface Matcher {
  name: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export type Node =
  | { type: 'number'; value: number }
  | { type: 'string'; value: string }
  | {
      type: 'selector';
      name: string;
      matchers: Matcher[];
      range?: number;
      offset?: number;
      at?: string;
    }
  | { type: 'subquery'; expr: Node; range: number; step?: number; offset?: number; at?: string }
  | { type: 'call'; func: string; args: Node[] }
  | {
      type: 'aggregate';
      op: string;
      param?: Node;
      expr: Node;
      grouping: string[];
      without: boolean;
    }
  | {
      type: 'binary';
      op: string;
      lhs: Node;
      rhs: Node;
      bool: boolean;
      matching?: VectorMatching;
    }
  | { type: 'unary'; op: '-' | '+'; expr: Node }
  | { type: 'paren'; expr: Node };

export interface VectorMatching {
  on: boolean;
  labels: string[];
  card: 'one-to-one' | 'many-to-one' | 'one-to-many';
  include: string[];
}

const AGGREGATORS = new Set([
  'sum',
  'avg',
  'count',
  'min',
  'max',
  'group',
  'stddev',
  'stdvar',
  'topk',
  'bottomk',
  'count_values',
  'quantile',
]);
const AGGREGATORS_WITH_PARAM = new Set(['topk', 'bottomk', 'count_values', 'quantile']);

/** Functions of Prometheus 2.42 (all still in 3.x) with their [min, max] argument counts. */
const FUNCTIONS: Record<string, [number, number]> = {
  ...Object.fromEntries(
    [
      'abs',
      'absent',
      'absent_over_time',
      'acos',
      'acosh',
      'asin',
      'asinh',
      'atan',
      'atanh',
      'avg_over_time',
      'ceil',
      'changes',
      'cos',
      'cosh',
      'count_over_time',
      'deg',
      'delta',
      'deriv',
      'exp',
      'floor',
      'idelta',
      'increase',
      'irate',
      'last_over_time',
      'ln',
      'log10',
      'log2',
      'max_over_time',
      'min_over_time',
      'present_over_time',
      'rad',
      'rate',
      'resets',
      'scalar',
      'sgn',
      'sin',
      'sinh',
      'sort',
      'sort_desc',
      'sqrt',
      'stddev_over_time',
      'stdvar_over_time',
      'sum_over_time',
      'tan',
      'tanh',
      'timestamp',
      'vector',
    ].map((f) => [f, [1, 1]]),
  ),
  ...Object.fromEntries(
    ['days_in_month', 'day_of_month', 'day_of_week', 'day_of_year', 'hour', 'minute', 'month', 'year'].map(
      (f) => [f, [0, 1]],
    ),
  ),
  clamp: [3, 3],
  clamp_max: [2, 2],
  clamp_min: [2, 2],
  histogram_quantile: [2, 2],
  holt_winters: [3, 3],
  label_join: [3, Number.POSITIVE_INFINITY],
  label_replace: [5, 5],
  pi: [0, 0],
  predict_linear: [2, 2],
  quantile_over_time: [2, 2],
  round: [1, 2],
  time: [0, 0],
};

const COMPARISON = new Set(['==', '!=', '<=', '<', '>=', '>']);
const SET_OPS = new Set(['and', 'or', 'unless']);
const PRECEDENCE: Record<string, number> = {
  or: 1,
  and: 2,
  unless: 2,
  '==': 3,
  '!=': 3,
  '<=': 3,
  '<': 3,
  '>=': 3,
  '>': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  atan2: 5,
  '^': 6,
};
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'atan2',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  ...AGGREGATORS,
]);

// ---------------------------------------------------------------------------------------------------
// Lexer

type TokenType = 'ident' | 'number' | 'duration' | 'string' | 'op' | 'punct' | 'eof';
interface Token {
  type: TokenType;
  text: string;
  pos: number;
  /** Parsed value: number for numbers, milliseconds for durations, the unescaped text for strings. */
  value?: number | string;
}

export class PromQLError extends Error {}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

function unquote(body: string, quote: string, pos: number): string {
  if (quote === '`') return body;
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = {
      a: '\x07',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
      v: '\v',
      '\\': '\\',
      '"': '"',
      "'": "'",
    };
    if (e !== undefined && e in simple) {
      out += simple[e];
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + len);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len)
        throw new PromQLError(`bad escape at ${pos + i}`);
      out +=
        e === 'x'
          ? String.fromCharCode(Number.parseInt(hex, 16))
          : String.fromCodePoint(Number.parseInt(hex, 16));
      i += len;
    } else if (e !== undefined && /[0-7]/.test(e)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct)) throw new PromQLError(`bad octal escape at ${pos + i}`);
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += 2;
    } else {
      throw new PromQLError(`unknown escape \\${e} at ${pos + i}`);
    }
  }
  return out;
}

function parseDuration(text: string, pos: number): number {
  const parts = [...text.matchAll(/(\d+)(ms|[smhdwy])/g)];
  if (parts.map((p) => p[0]).join('') !== text) throw new PromQLError(`bad duration "${text}" at ${pos}`);
  return parts.reduce((ms, p) => ms + Number(p[1]) * (DURATION_UNITS[p[2] as string] as number), 0);
}

export function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  // Inside [...], ":" separates a subquery's range and step; elsewhere it may start a metric name.
  let brackets = 0;
  while (i < input.length) {
    const c = input[i] as string;
    if (c === '[') brackets++;
    if (c === ']') brackets--;
    if (c === ':' && brackets > 0) {
      tokens.push({ type: 'punct', text: c, pos: i });
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < input.length && input[i] !== '\n') i++;
      continue;
    }
    const start = i;
    if (c === '"' || c === "'" || c === '`') {
      i++;
      let body = '';
      while (i < input.length && input[i] !== c) {
        if (input[i] === '\\' && c !== '`') {
          body += input.slice(i, i + 2);
          i += 2;
        } else {
          if (input[i] === '\n' && c !== '`') throw new PromQLError(`newline in string at ${i}`);
          body += input[i];
          i++;
        }
      }
      if (i >= input.length) throw new PromQLError(`unterminated string at ${start}`);
      i++;
      tokens.push({
        type: 'string',
        text: input.slice(start, i),
        pos: start,
        value: unquote(body, c, start),
      });
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(input[i + 1] ?? ''))) {
      const dur = /^(\d+(ms|[smhdwy]))+(?![a-zA-Z0-9_])/.exec(input.slice(i));
      if (dur) {
        i += dur[0].length;
        tokens.push({ type: 'duration', text: dur[0], pos: start, value: parseDuration(dur[0], start) });
        continue;
      }
      const num = /^(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)/.exec(input.slice(i));
      if (!num) throw new PromQLError(`bad number at ${i}`);
      i += num[0].length;
      if (/[a-zA-Z_]/.test(input[i] ?? '')) throw new PromQLError(`bad number or duration at ${start}`);
      tokens.push({ type: 'number', text: num[0], pos: start, value: Number(num[0]) });
      continue;
    }
    if (/[a-zA-Z_:]/.test(c)) {
      const word = (/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(input.slice(i)) as RegExpExecArray)[0];
      i += word.length;
      const lower = word.toLowerCase();
      if (lower === 'inf' || lower === 'nan') {
        tokens.push({
          type: 'number',
          text: word,
          pos: start,
          value: lower === 'inf' ? Number.POSITIVE_INFINITY : Number.NaN,
        });
      } else {
        tokens.push({ type: 'ident', text: word, pos: start });
      }
      continue;
    }
    const two = input.slice(i, i + 2);
    if (['==', '!=', '<=', '>=', '=~', '!~'].includes(two)) {
      tokens.push({ type: 'op', text: two, pos: start });
      i += 2;
      continue;
    }
    if ('+-*/%^<>='.includes(c)) {
      tokens.push({ type: 'op', text: c, pos: start });
      i++;
      continue;
    }
    if ('(){}[],:@'.includes(c)) {
      tokens.push({ type: 'punct', text: c, pos: start });
      i++;
      continue;
    }
    throw new PromQLError(`unexpected character "${c}" at ${i}`);
  }
  tokens.push({ type: 'eof', text: '', pos: input.length });
  return tokens;
}

// ---------------------------------------------------------------------------------------------------
// Parser

function matchesEmpty(m: Matcher): boolean {
  switch (m.op) {
    case '=':
      return m.value === '';
    case '!=':
      return m.value !== '';
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test('');
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test('');
  }
}

/** The metric a selector reads: its name, or the value of a __name__="..." matcher. */
export function metricName(s: { name: string; matchers: Matcher[] }): string {
  return s.name || (s.matchers.find((m) => m.name === '__name__' && m.op === '=')?.value ?? '');
}

class Parser {
  private i = 0;
  private readonly tokens: Token[];
  private readonly input: string;

  constructor(tokens: Token[], input: string) {
    this.tokens = tokens;
    this.input = input;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)] as Token;
  }
  private next(): Token {
    const t = this.peek();
    if (t.type !== 'eof') this.i++;
    return t;
  }
  private fail(message: string, t = this.peek()): never {
    throw new PromQLError(`${message} at position ${t.pos} (near "${this.input.slice(t.pos, t.pos + 20)}")`);
  }
  private isPunct(text: string, t = this.peek()): boolean {
    return t.type === 'punct' && t.text === text;
  }
  private isKeyword(word: string, t = this.peek()): boolean {
    return t.type === 'ident' && t.text.toLowerCase() === word;
  }
  private expectPunct(text: string): void {
    if (!this.isPunct(text)) this.fail(`expected "${text}"`);
    this.next();
  }

  parse(): Node {
    const expr = this.expr(0);
    if (this.peek().type !== 'eof') this.fail('unexpected token');
    return expr;
  }

  private binaryOp(): string | undefined {
    const t = this.peek();
    if (t.type === 'op' && t.text in PRECEDENCE) return t.text;
    if (t.type === 'ident' && ['and', 'or', 'unless', 'atan2'].includes(t.text.toLowerCase()))
      return t.text.toLowerCase();
    return undefined;
  }

  private expr(minPrec: number): Node {
    let lhs = this.unary();
    for (;;) {
      const op = this.binaryOp();
      if (op === undefined) break;
      const prec = PRECEDENCE[op] as number;
      if (prec < minPrec) break;
      this.next();
      let bool = false;
      if (this.isKeyword('bool')) {
        if (!COMPARISON.has(op)) this.fail('bool modifier on a non-comparison operator');
        this.next();
        bool = true;
      }
      let matching: VectorMatching | undefined;
      if (this.isKeyword('on') || this.isKeyword('ignoring')) {
        const on = this.next().text.toLowerCase() === 'on';
        matching = { on, labels: this.labelList(), card: 'one-to-one', include: [] };
        if (this.isKeyword('group_left') || this.isKeyword('group_right')) {
          if (SET_OPS.has(op)) this.fail('group modifiers on a set operator');
          const left = this.next().text.toLowerCase() === 'group_left';
          matching.card = left ? 'many-to-one' : 'one-to-many';
          matching.include = this.isPunct('(') ? this.labelList() : [];
        }
      }
      const rhs = this.expr(op === '^' ? prec : prec + 1);
      lhs = { type: 'binary', op, lhs, rhs, bool, ...(matching ? { matching } : {}) };
    }
    return lhs;
  }

  private unary(): Node {
    const t = this.peek();
    if (t.type === 'op' && (t.text === '-' || t.text === '+')) {
      this.next();
      // Unary operators bind like "*": -a ^ b is -(a ^ b), -a * b is (-a) * b.
      const operand = this.expr(PRECEDENCE['^'] as number);
      if (operand.type === 'number')
        return { type: 'number', value: t.text === '-' ? -operand.value : operand.value };
      return { type: 'unary', op: t.text as '-' | '+', expr: operand };
    }
    return this.postfix(this.primary());
  }

  private postfix(node: Node): Node {
    let expr = node;
    for (;;) {
      if (this.isPunct('[')) {
        this.next();
        const range = this.duration();
        if (this.isPunct(':')) {
          this.next();
          const step = this.peek().type === 'duration' ? this.duration() : undefined;
          this.expectPunct(']');
          expr = { type: 'subquery', expr, range, ...(step !== undefined ? { step } : {}) };
        } else {
          this.expectPunct(']');
          if (expr.type !== 'selector' || expr.range !== undefined || expr.offset !== undefined || expr.at)
            this.fail('a range can only follow a plain vector selector');
          expr = { ...expr, range };
        }
      } else if (this.isKeyword('offset')) {
        this.next();
        let sign = 1;
        if (this.peek().type === 'op' && (this.peek().text === '-' || this.peek().text === '+')) {
          sign = this.next().text === '-' ? -1 : 1;
        }
        const offset = sign * this.duration();
        if ((expr.type !== 'selector' && expr.type !== 'subquery') || expr.offset !== undefined)
          this.fail('offset must follow a selector or subquery, once');
        expr = { ...expr, offset };
      } else if (this.isPunct('@')) {
        this.next();
        let at: string;
        const t = this.next();
        if (t.type === 'number') at = (t.value as number).toFixed(3);
        else if (t.type === 'ident' && (t.text === 'start' || t.text === 'end')) {
          this.expectPunct('(');
          this.expectPunct(')');
          at = `${t.text}()`;
        } else this.fail('bad @ modifier', t);
        if ((expr.type !== 'selector' && expr.type !== 'subquery') || expr.at !== undefined)
          this.fail('@ must follow a selector or subquery, once');
        expr = { ...expr, at };
      } else {
        return expr;
      }
    }
  }

  private duration(): number {
    const t = this.next();
    if (t.type !== 'duration') this.fail('expected a duration', t);
    return t.value as number;
  }

  private labelName(): string {
    const t = this.next();
    if (t.type !== 'ident' || !/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(t.text)) this.fail('expected a label name', t);
    return t.text;
  }

  private labelList(): string[] {
    this.expectPunct('(');
    const labels: string[] = [];
    while (!this.isPunct(')')) {
      labels.push(this.labelName());
      if (this.isPunct(',')) this.next();
      else if (!this.isPunct(')')) this.fail('expected "," or ")"');
    }
    this.next();
    return labels;
  }

  private matchers(): Matcher[] {
    this.expectPunct('{');
    const matchers: Matcher[] = [];
    while (!this.isPunct('}')) {
      const name = this.labelName();
      const op = this.next();
      if (op.type !== 'op' || !['=', '!=', '=~', '!~'].includes(op.text)) this.fail('expected a matcher', op);
      const value = this.next();
      if (value.type !== 'string') this.fail('expected a string', value);
      matchers.push({ name, op: op.text as Matcher['op'], value: value.value as string });
      if (this.isPunct(',')) this.next();
      else if (!this.isPunct('}')) this.fail('expected "," or "}"');
    }
    this.next();
    return matchers;
  }

  private primary(): Node {
    const t = this.peek();
    if (t.type === 'number') {
      this.next();
      return { type: 'number', value: t.value as number };
    }
    if (t.type === 'string') {
      this.next();
      return { type: 'string', value: t.value as string };
    }
    if (this.isPunct('(')) {
      this.next();
      const expr = this.expr(0);
      this.expectPunct(')');
      return { type: 'paren', expr };
    }
    if (this.isPunct('{')) {
      const matchers = this.matchers();
      if (matchers.every(matchesEmpty))
        this.fail('a selector needs a matcher that does not match the empty string', t);
      return { type: 'selector', name: '', matchers };
    }
    if (t.type !== 'ident') this.fail('unexpected token');
    const word = t.text;
    const lower = word.toLowerCase();
    if (AGGREGATORS.has(lower)) return this.aggregate();
    if (this.isPunct('(', this.peek(1))) {
      const arity = FUNCTIONS[word];
      if (!arity) this.fail(`unknown function "${word}"`);
      this.next();
      this.next();
      const args: Node[] = [];
      while (!this.isPunct(')')) {
        args.push(this.expr(0));
        if (this.isPunct(',')) this.next();
        else if (!this.isPunct(')')) this.fail('expected "," or ")"');
      }
      this.next();
      if (args.length < arity[0] || args.length > arity[1])
        this.fail(`wrong number of arguments to ${word}`, t);
      return { type: 'call', func: word, args };
    }
    if (KEYWORDS.has(lower)) this.fail(`unexpected keyword "${word}"`);
    this.next();
    const matchers = this.isPunct('{') ? this.matchers() : [];
    if (matchers.some((m) => m.name === '__name__')) this.fail('metric name set twice', t);
    return { type: 'selector', name: word, matchers };
  }

  private aggregate(): Node {
    const op = this.next().text.toLowerCase();
    let grouping: string[] = [];
    let without = false;
    let grouped = false;
    const modifier = () => {
      if (this.isKeyword('by') || this.isKeyword('without')) {
        if (grouped) this.fail('grouping given twice');
        without = this.next().text.toLowerCase() === 'without';
        grouping = this.labelList();
        grouped = true;
      }
    };
    modifier();
    this.expectPunct('(');
    let param: Node | undefined;
    if (AGGREGATORS_WITH_PARAM.has(op)) {
      param = this.expr(0);
      this.expectPunct(',');
    }
    const expr = this.expr(0);
    this.expectPunct(')');
    modifier();
    return { type: 'aggregate', op, expr, grouping, without, ...(param ? { param } : {}) };
  }
}

export function parsePromQL(input: string): Node {
  return new Parser(tokenize(input), input).parse();
}

// ---------------------------------------------------------------------------------------------------
// Printer: Prometheus' String() forms (parser/printer.go), so that printing a parse of ours and
// Prometheus' format_query of the same input agree once whitespace is ignored.

/** Go's fmt %v of a float64: the shortest digits, in exponent form below 1e-4 and from 1e6. */
export function goFloat(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const [mantissa, expText] = v.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 6)
    return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  return String(v);
}

/** Prometheus' model.Duration String(). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.abs(ms);
  let out = ms < 0 ? '-' : '';
  const unit = (name: string, mult: number, exact: boolean) => {
    if (exact && rest % mult !== 0) return;
    const v = Math.floor(rest / mult);
    if (v > 0) {
      out += `${v}${name}`;
      rest -= v * mult;
    }
  };
  unit('y', DURATION_UNITS.y as number, true);
  unit('w', DURATION_UNITS.w as number, true);
  unit('d', DURATION_UNITS.d as number, false);
  unit('h', DURATION_UNITS.h as number, false);
  unit('m', DURATION_UNITS.m as number, false);
  unit('s', DURATION_UNITS.s as number, false);
  unit('ms', 1, false);
  return out;
}

/** Go's %q for the strings PromQL holds. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

function modifiers(node: { offset?: number; at?: string }): string {
  const at = node.at !== undefined ? ` @ ${node.at}` : '';
  const offset = node.offset !== undefined ? ` offset ${formatDuration(node.offset)}` : '';
  return at + offset;
}

export function printPromQL(node: Node): string {
  switch (node.type) {
    case 'number':
      return goFloat(node.value);
    case 'string':
      return goQuote(node.value);
    case 'selector': {
      const labels = node.matchers
        .filter((m) => !(m.name === '__name__' && m.op === '=' && m.value === node.name))
        .map((m) => `${m.name}${m.op}${goQuote(m.value)}`)
        .sort();
      const sel = labels.length > 0 ? `${node.name}{${labels.join(',')}}` : node.name;
      const range = node.range !== undefined ? `[${formatDuration(node.range)}]` : '';
      return sel + range + modifiers(node);
    }
    case 'subquery':
      return `${printPromQL(node.expr)}[${formatDuration(node.range)}:${
        node.step !== undefined ? formatDuration(node.step) : ''
      }]${modifiers(node)}`;
    case 'call':
      return `${node.func}(${node.args.map(printPromQL).join(', ')})`;
    case 'aggregate': {
      let op = node.op;
      if (node.without) op += ` without (${node.grouping.join(', ')}) `;
      else if (node.grouping.length > 0) op += ` by (${node.grouping.join(', ')}) `;
      const param = node.param ? `${printPromQL(node.param)}, ` : '';
      return `${op}(${param}${printPromQL(node.expr)})`;
    }
    case 'binary': {
      let matching = '';
      const m = node.matching;
      if (m && (m.labels.length > 0 || m.on)) {
        matching = ` ${m.on ? 'on' : 'ignoring'} (${m.labels.join(', ')})`;
        if (m.card !== 'one-to-one')
          matching += ` group_${m.card === 'many-to-one' ? 'left' : 'right'} (${m.include.join(', ')})`;
      }
      return `${printPromQL(node.lhs)} ${node.op}${node.bool ? ' bool' : ''}${matching} ${printPromQL(node.rhs)}`;
    }
    case 'unary':
      return `${node.op}${printPromQL(node.expr)}`;
    case 'paren':
      return `(${printPromQL(node.expr)})`;
  }
}

/** Every binary operation in parentheses: shows how the parser grouped the operands. */
export function printParenthesized(node: Node): string {
  switch (node.type) {
    case 'binary': {
      const m = node.matching;
      let matching = '';
      if (m && (m.labels.length > 0 || m.on)) {
        matching = ` ${m.on ? 'on' : 'ignoring'} (${m.labels.join(', ')})`;
        if (m.card !== 'one-to-one')
          matching += ` group_${m.card === 'many-to-one' ? 'left' : 'right'} (${m.include.join(', ')})`;
      }
      const op = `${node.op}${node.bool ? ' bool' : ''}${matching}`;
      return `(${printParenthesized(node.lhs)} ${op} ${printParenthesized(node.rhs)})`;
    }
    case 'unary':
      return `${node.op}(${printParenthesized(node.expr)})`;
    case 'paren':
      return `(${printParenthesized(node.expr)})`;
    case 'call':
      return `${node.func}(${node.args.map(printParenthesized).join(', ')})`;
    case 'aggregate': {
      const grouping = node.without
        ? ` without (${node.grouping.join(', ')})`
        : node.grouping.length > 0
          ? ` by (${node.grouping.join(', ')})`
          : '';
      const param = node.param ? `${printParenthesized(node.param)}, ` : '';
      return `${node.op}${grouping} (${param}${printParenthesized(node.expr)})`;
    }
    case 'subquery':
      return `(${printParenthesized(node.expr)})[${formatDuration(node.range)}:${
        node.step !== undefined ? formatDuration(node.step) : ''
      }]${modifiers(node)}`;
    default:
      return printPromQL(node);
  }
}

// ---------------------------------------------------------------------------------------------------
// Analysis: which series a query selects, and whether every label it names exists where it is used.

export interface Schema {
  /** Label names of a metric (target labels job and instance included), undefined when unknown. */
  labels(metric: string): ReadonlySet<string> | undefined;
}

export type Value = { kind: 'scalar' } | { kind: 'string' } | { kind: 'vector'; labels: Set<string> };

export interface Analysis {
  /** Output of the whole query. */
  value: Value;
  selectors: { name: string; matchers: Matcher[] }[];
  problems: string[];
}

function vectorLabels(v: Value): Set<string> {
  return v.kind === 'vector' ? v.labels : new Set();
}
const missing = (needed: Iterable<string>, present: ReadonlySet<string>) =>
  [...needed].filter((l) => !present.has(l));
const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((l) => b.has(l));
const fmt = (s: Iterable<string>) => `{${[...s].sort().join(', ')}}`;

export function analyze(node: Node, schema: Schema): Analysis {
  const selectors: Analysis['selectors'] = [];
  const problems: string[] = [];

  const walk = (n: Node): Value => {
    switch (n.type) {
      case 'number':
        return { kind: 'scalar' };
      case 'string':
        return { kind: 'string' };
      case 'paren':
      case 'unary':
        return walk(n.expr);
      case 'subquery':
        return walk(n.expr);
      case 'selector': {
        const name = metricName(n);
        selectors.push({ name, matchers: n.matchers });
        if (name === '') {
          problems.push(`selector without a metric name: ${printPromQL(n)}`);
          return { kind: 'vector', labels: new Set() };
        }
        const labels = schema.labels(name);
        if (!labels) {
          problems.push(`metric ${name} is not exported`);
          return { kind: 'vector', labels: new Set(n.matchers.map((m) => m.name)) };
        }
        for (const m of n.matchers)
          if (m.name !== '__name__' && !labels.has(m.name))
            problems.push(`${name} has no label "${m.name}" (it has ${fmt(labels)})`);
        return { kind: 'vector', labels: new Set(labels) };
      }
      case 'call': {
        const args = n.args.map(walk);
        const first = args.find((a) => a.kind === 'vector');
        const str = (i: number) =>
          n.args[i]?.type === 'string' ? (n.args[i] as { value: string }).value : '';
        switch (n.func) {
          case 'time':
          case 'pi':
          case 'scalar':
            return { kind: 'scalar' };
          case 'vector':
            return { kind: 'vector', labels: new Set() };
          case 'absent':
          case 'absent_over_time': {
            const arg = n.args[0];
            const eq =
              arg?.type === 'selector'
                ? arg.matchers.filter((m) => m.op === '=' && m.name !== '__name__').map((m) => m.name)
                : [];
            return { kind: 'vector', labels: new Set(eq) };
          }
          case 'histogram_quantile': {
            const input = vectorLabels(args[1] ?? { kind: 'scalar' });
            if (!input.has('le'))
              problems.push(`histogram_quantile over series without "le": ${printPromQL(n)}`);
            const out = new Set(input);
            out.delete('le');
            return { kind: 'vector', labels: out };
          }
          case 'label_replace': {
            const input = vectorLabels(args[0] ?? { kind: 'scalar' });
            const src = str(3);
            if (src !== '' && !input.has(src))
              problems.push(`label_replace reads "${src}", absent from ${fmt(input)}`);
            return { kind: 'vector', labels: new Set([...input, str(1)]) };
          }
          case 'label_join': {
            const input = vectorLabels(args[0] ?? { kind: 'scalar' });
            for (let i = 3; i < n.args.length; i++)
              if (!input.has(str(i)))
                problems.push(`label_join reads "${str(i)}", absent from ${fmt(input)}`);
            return { kind: 'vector', labels: new Set([...input, str(1)]) };
          }
          default:
            return first
              ? { kind: 'vector', labels: new Set(vectorLabels(first)) }
              : { kind: 'vector', labels: new Set() };
        }
      }
      case 'aggregate': {
        if (n.param) walk(n.param);
        const input = vectorLabels(walk(n.expr));
        for (const l of missing(n.grouping, input))
          problems.push(
            `${n.op} ${n.without ? 'without' : 'by'} "${l}", absent from ${fmt(input)}: ${printPromQL(n)}`,
          );
        let out: Set<string>;
        if (n.op === 'topk' || n.op === 'bottomk') out = new Set(input);
        else if (n.without) out = new Set([...input].filter((l) => !n.grouping.includes(l)));
        else out = new Set(n.grouping);
        if (n.op === 'count_values' && n.param?.type === 'string') out.add(n.param.value);
        return { kind: 'vector', labels: out };
      }
      case 'binary': {
        const lv = walk(n.lhs);
        const rv = walk(n.rhs);
        if (lv.kind !== 'vector' && rv.kind !== 'vector') return { kind: 'scalar' };
        if (lv.kind !== 'vector' || rv.kind !== 'vector') {
          if (SET_OPS.has(n.op)) problems.push(`set operator ${n.op} needs vectors on both sides`);
          return { kind: 'vector', labels: new Set(vectorLabels(lv.kind === 'vector' ? lv : rv)) };
        }
        const l = lv.labels;
        const r = rv.labels;
        const m = n.matching;
        const where = `in ${printPromQL(n)}`;
        if (m?.on) {
          for (const x of missing(m.labels, l)) problems.push(`on (${x}): left side lacks it ${where}`);
          for (const x of missing(m.labels, r)) problems.push(`on (${x}): right side lacks it ${where}`);
        } else if (m) {
          for (const x of m.labels)
            if (!l.has(x) && !r.has(x)) problems.push(`ignoring (${x}): neither side has it ${where}`);
        }
        const strip = (s: Set<string>) =>
          new Set([...s].filter((x) => !(m && !m.on && m.labels.includes(x))));
        if (SET_OPS.has(n.op)) {
          if (n.op !== 'or' && !m && !sameSet(l, r))
            problems.push(`${n.op} without on(): ${fmt(l)} never equals ${fmt(r)} ${where}`);
          return { kind: 'vector', labels: n.op === 'or' ? new Set([...l, ...r]) : new Set(l) };
        }
        if (!m || m.card === 'one-to-one') {
          if (!m?.on && !sameSet(strip(l), strip(r)))
            problems.push(
              `one-to-one match of ${fmt(strip(l))} with ${fmt(strip(r))} never matches ${where}`,
            );
          if (m?.on) return { kind: 'vector', labels: new Set(m.labels) };
          return { kind: 'vector', labels: strip(l) };
        }
        const [many, one] = m.card === 'many-to-one' ? [l, r] : [r, l];
        for (const x of missing(m.include, one))
          problems.push(
            `group_${m.card === 'many-to-one' ? 'left' : 'right'} (${x}): the "one" side lacks it ${where}`,
          );
        return { kind: 'vector', labels: new Set([...many, ...m.include]) };
      }
    }
  };

  const value = walk(node);
  return { value, selectors, problems };
}

/** The value of an expression made of number literals only (a threshold like `0.9 * 256 * 1024`). */
export function constantValue(node: Node): number | undefined {
  switch (node.type) {
    case 'number':
      return node.value;
    case 'paren':
      return constantValue(node.expr);
    case 'unary': {
      const v = constantValue(node.expr);
      return v === undefined ? undefined : node.op === '-' ? -v : v;
    }
    case 'binary': {
      const l = constantValue(node.lhs);
      const r = constantValue(node.rhs);
      if (l === undefined || r === undefined) return undefined;
      const ops: Record<string, (a: number, b: number) => number> = {
        '+': (a, b) => a + b,
        '-': (a, b) => a - b,
        '*': (a, b) => a * b,
        '/': (a, b) => a / b,
        '%': (a, b) => a % b,
        '^': (a, b) => a ** b,
      };
      return ops[node.op]?.(l, r);
    }
    default:
      return undefined;
  }
}
