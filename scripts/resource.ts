// Owns `npm run new:resource -- <name>` and `npm run rm:resource -- <name>`: adding a resource from
// src/modules/_template/, and removing one (items included) with a migration that drops its tables.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TEMPLATE = 'src/modules/_template';
const APP = 'src/app.ts';
const SCOPES = 'src/scopes.ts';
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)];
/** Where the new:resource rows go in docs; rm:resource removes the rows that name the resource. */
const RESOURCE_TABLE = 'docs/behaviour.md';

const NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const RESERVED = new Set(['api-keys', 'auth', 'health', 'me', 'metrics', 'docs', '_template']);

export interface Names {
  /** kebab-case plural: the URL path, folder, file prefix and scope prefix (`purchase-orders`). */
  name: string;
  /** snake_case: the table (`purchase_orders`). */
  table: string;
  /** camelCase: the routes function (`purchaseOrders`). */
  camel: string;
  /** PascalCase plural and singular: repository factory and schema names. */
  Plural: string;
  Singular: string;
  /** Lower-case words, singular: used in messages (`purchase order`). */
  singular: string;
}

export function namesOf(name: string, singularOverride?: string): Names {
  if (!NAME.test(name) || RESERVED.has(name))
    throw new Error(
      `"${name}" is not a usable resource name: lowercase words joined by "-", plural (e.g. orders)`,
    );
  const words = name.split('-');
  const last = words.at(-1) as string;
  const singularLast =
    singularOverride ??
    (last.endsWith('ies') ? `${last.slice(0, -3)}y` : last.endsWith('s') ? last.slice(0, -1) : last);
  const singularWords = [...words.slice(0, -1), singularLast];
  const pascal = (ws: string[]) => ws.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('');
  return {
    name,
    table: words.join('_'),
    camel: words[0] + pascal(words.slice(1)),
    Plural: pascal(words),
    Singular: pascal(singularWords),
    singular: singularWords.join(' '),
  };
}

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const write = (path: string, text: string) => {
  mkdirSync(dirname(join(ROOT, path)), { recursive: true });
  writeFileSync(join(ROOT, path), text);
};

function fill(template: string, n: Names): string {
  return template
    .replaceAll('__name__', n.name)
    .replaceAll('__table__', n.table)
    .replaceAll('__camel__', n.camel)
    .replaceAll('__Plural__', n.Plural)
    .replaceAll('__Singular__', n.Singular)
    .replaceAll('__singular__', n.singular);
}

function migrationsOf(table: string): string[] {
  return readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith(`_${table}.sql`));
}

/** The next migration name: now, or one past the newest existing one (their order is checked). */
function nextMigration(suffix: string): string {
  const newest = Math.max(
    0,
    ...readdirSync(join(ROOT, 'migrations')).map((f) => Number.parseInt(f, 10) || 0),
  );
  return `migrations/${Math.max(Date.now(), newest + 1)}_${suffix}.sql`;
}

function editScopes(edit: (scopes: string[]) => string[]) {
  const text = read(SCOPES);
  const match = /export const SCOPES = \[([^\]]*)\] as const;/.exec(text);
  if (!match) throw new Error(`${SCOPES}: the SCOPES list was not found`);
  const scopes = [...(match[1] as string).matchAll(/'([^']+)'/g)].map((m) => m[1] as string);
  const list = edit(scopes)
    .map((s) => `'${s}'`)
    .join(', ');
  write(SCOPES, text.replace(match[0], `export const SCOPES = [${list}] as const;`));
}

function format(paths: string[]) {
  const biome = join(ROOT, 'node_modules/.bin/biome');
  if (existsSync(biome)) execFileSync(biome, ['check', '--write', ...paths], { cwd: ROOT, stdio: 'ignore' });
}

export function newResource(n: Names): string[] {
  const module = `src/modules/${n.name}`;
  if (existsSync(join(ROOT, module))) throw new Error(`${module} exists already`);
  const files: Record<string, string> = {
    [`${module}/${n.name}-schemas.ts`]: 'schemas.ts.tmpl',
    [`${module}/${n.name}-repository.ts`]: 'repository.ts.tmpl',
    [`${module}/${n.name}-routes.ts`]: 'routes.ts.tmpl',
    [`test/${n.name}.test.ts`]: 'test.ts.tmpl',
    [nextMigration(n.table)]: 'migration.sql.tmpl',
  };
  for (const [path, template] of Object.entries(files)) write(path, fill(read(`${TEMPLATE}/${template}`), n));

  // Registered in app.ts next to the other modules, imported in order.
  let app = read(APP);
  const imports = [...app.matchAll(/^import \w+ from '\.\/modules\/[^']+';$/gm)];
  const importLine = `import ${n.camel}Routes from './modules/${n.name}/${n.name}-routes.ts';`;
  const after = imports.filter((m) => m[0] < importLine).at(-1) ?? imports[0];
  if (!after || after.index === undefined) throw new Error(`${APP}: no module imports found`);
  const at = after[0] < importLine ? after.index + after[0].length + 1 : after.index;
  app = app.slice(0, at) + importLine + '\n' + app.slice(at);
  const registrations = [...app.matchAll(/^( *)await v1\.register\(\w+\);$/gm)];
  const last = registrations.at(-1);
  if (!last || last.index === undefined) throw new Error(`${APP}: no "await v1.register(...)" found`);
  const end = last.index + last[0].length;
  app = `${app.slice(0, end)}\n${last[1]}await v1.register(${n.camel}Routes);${app.slice(end)}`;
  write(APP, app);

  editScopes((scopes) => [...scopes, `${n.name}:read`, `${n.name}:write`]);

  const docs = read(RESOURCE_TABLE);
  const rowsEnd = docs.indexOf('\n\n', docs.indexOf('| resource |'));
  if (rowsEnd < 0) throw new Error(`${RESOURCE_TABLE}: the resources table was not found`);
  const row = `| \`/v1/${n.name}\` | \`${n.name}:read\`, \`${n.name}:write\` | \`src/modules/${n.name}/\` |`;
  write(RESOURCE_TABLE, docs.slice(0, rowsEnd) + `\n${row}` + docs.slice(rowsEnd));

  const written = [...Object.keys(files), APP, SCOPES, RESOURCE_TABLE];
  format(written.filter((f) => f.endsWith('.ts')));
  return written;
}

export function rmResource(n: Names): string[] {
  const module = `src/modules/${n.name}`;
  if (!existsSync(join(ROOT, module))) throw new Error(`${module} does not exist`);
  const changed = [module];
  rmSync(join(ROOT, module), { recursive: true });
  for (const f of readdirSync(join(ROOT, 'test')))
    if (f === `${n.name}.test.ts` || f.startsWith(`${n.name}-`)) {
      rmSync(join(ROOT, 'test', f));
      changed.push(`test/${f}`);
    }

  const app = read(APP)
    .split('\n')
    .filter(
      (line) => !line.includes(`'./modules/${n.name}/`) && !line.includes(`v1.register(${n.camel}Routes)`),
    )
    .join('\n');
  write(APP, app);
  editScopes((scopes) => scopes.filter((s) => !s.startsWith(`${n.name}:`)));
  changed.push(APP, SCOPES);

  // Docs: the table rows that name its routes, and the sections marked as its own.
  const route = new RegExp(`/v1/${n.name}(?![\\w-])`);
  const block = new RegExp(`<!-- resource:${n.name} -->[\\s\\S]*?<!-- /resource:${n.name} -->\\n?`, 'g');
  for (const doc of DOCS) {
    const text = read(doc);
    const next = text
      .replace(block, '')
      .split('\n')
      .filter((line) => !(line.startsWith('|') && route.test(line)))
      .join('\n');
    if (next !== text) {
      write(doc, next);
      changed.push(doc);
    }
  }

  // Its tables are dropped by a new migration (deployed databases have them); Down recreates them empty.
  const creates = migrationsOf(n.table);
  if (creates.length > 0) {
    const ups = creates.map((f) => {
      const text = read(`migrations/${f}`);
      return text.slice(0, text.indexOf('-- Down Migration')).replace('-- Up Migration', '').trim();
    });
    const tables = ups.flatMap((up) => [...up.matchAll(/CREATE TABLE (\w+)/g)].map((m) => m[1] as string));
    const drop = nextMigration(`drop_${n.table}`);
    write(
      drop,
      `-- Up Migration\n\n-- ${n.name} was removed (npm run rm:resource); its data goes with it.\n` +
        `DROP TABLE IF EXISTS ${tables.reverse().join(', ')};\n\n-- Down Migration\n\n${ups.join('\n\n')}\n`,
    );
    changed.push(drop);
  }
  format([APP, SCOPES]);
  return changed;
}

/** Tracked files that still name a path (the benchmarks' requests, alert-rule test series...). */
function mentionsOf(text: string): string[] {
  try {
    const out = execFileSync(
      'git',
      ['grep', '-l', '-F', text, '--', '.', ':!migrations', ':!bench/results'],
      { cwd: ROOT },
    );
    return out.toString().split('\n').filter(Boolean);
  } catch {
    return []; // no match (exit 1) or not a git checkout
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, name, ...rest] = process.argv.slice(2);
  const singular = rest[0] === '--singular' ? rest[1] : undefined;
  try {
    if ((command !== 'new' && command !== 'rm') || name === undefined)
      throw new Error('usage: node scripts/resource.ts new|rm <name> [--singular <word>]');
    const n = namesOf(name, singular);
    const changed = command === 'new' ? newResource(n) : rmResource(n);
    console.log(`${command === 'new' ? 'wrote' : 'removed or changed'}:\n  ${changed.join('\n  ')}`);
    if (command === 'new')
      console.log(
        `next: npm run migrate, then npx vitest run test/${n.name}.test.ts; grant ${n.name}:read/write`,
      );
    else {
      const left = mentionsOf(`/v1/${n.name}`);
      if (left.length > 0)
        console.log(`still naming /v1/${n.name}, to edit by hand:\n  ${left.join('\n  ')}`);
    }
  } catch (err) {
    console.error(`${command ?? 'resource'}: ${(err as Error).message}`);
    process.exit(1);
  }
}
