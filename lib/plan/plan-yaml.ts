// Reading a YAML document node by node with the place of every node, so that each mistake in a
// plan file is reported as `PLAN:LINE:COL: where: what` and all of them at once: a plan of
// hundreds of VMs is fixed in one pass, not one error per run.

import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Scalar } from 'yaml';
import { OneswapError } from '../errors/index.js';

export interface PlanProblem {
  /** 1-based, as editors count. */
  readonly line: number;
  readonly col: number;
  /** The key path, e.g. `vms[web01].cutover`. */
  readonly where: string;
  /** What is wrong, and the fix. */
  readonly what: string;
}

/** Every problem of a plan file, one line each; a usage error (exit 2). */
export class PlanFileError extends OneswapError {
  readonly problems: readonly PlanProblem[];

  constructor(source: string, problems: readonly PlanProblem[]) {
    super('usage', problems.map((p) => `${source}:${p.line}:${p.col}: ${p.where}: ${p.what}`).join('\n'));
    this.problems = problems;
  }
}

/** A key of a mapping with its value; `key` places messages about the key itself. */
export interface Field {
  readonly name: string;
  readonly key: Node;
  /** null for `key:` with nothing after it. */
  readonly value: Node | null;
  readonly where: string;
}

export class YamlReader {
  readonly problems: PlanProblem[] = [];
  readonly doc: Document.Parsed;
  private readonly lines: LineCounter;

  constructor(text: string) {
    this.lines = new LineCounter();
    // Merge keys (`<<: *common`) let several VMs share overrides; uniqueKeys makes a repeated key an error.
    this.doc = parseDocument(text, { lineCounter: this.lines, merge: true, uniqueKeys: true, prettyErrors: false });
    // The first syntax error only: the next ones are mostly how the parser stumbled on after it.
    for (const e of this.doc.errors.slice(0, 1)) {
      const { line, col } = this.lines.linePos(e.pos[0]);
      const what = e.code === 'DUPLICATE_KEY' ? 'this key is given twice in the same mapping; keep one' : e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      this.problems.push({ line, col, where: 'YAML', what });
    }
  }

  /** Records a problem at a node (the start of the file when there is none). */
  report(node: Node | null | undefined, where: string, what: string): void {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    this.problems.push({ line, col, where, what });
  }

  line(node: Node | null | undefined): number {
    return this.lines.linePos(node?.range?.[0] ?? 0).line;
  }

  /**
   * The keys of a mapping in order (aliases and merge keys resolved; a key of the mapping itself
   * wins over a merged one). Unknown keys are reported, naming the known ones; `refused` keys get
   * their own message. A null value counts as an empty mapping.
   */
  fields(node: Node | null, where: string, known: readonly string[], refused: Readonly<Record<string, string>> = {}, skip: (name: string) => boolean = () => false): Field[] | undefined {
    const map = this.resolve(node);
    if (map === null) return [];
    if (!isMap(map)) {
      this.report(map, where, `must be a mapping of keys (${known.join(', ')})`);
      return undefined;
    }
    const own: Field[] = [];
    const merged: Field[] = [];
    for (const pair of map.items) {
      const key = pair.key as Node | null;
      const value = (pair.value ?? null) as Node | null;
      if (isScalar(key) && typeof key.value === 'symbol') {
        for (const source of this.mergeSources(value, where)) {
          for (const f of this.fields(source, where, known, refused) ?? []) merged.push(f);
        }
        continue;
      }
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.report(key, where || 'plan', 'keys must be plain names');
        continue;
      }
      const name = key.value;
      const at = where === '' ? name : `${where}.${name}`;
      if (skip(name)) continue;
      if (refused[name] !== undefined) {
        this.report(key, at, refused[name]);
        continue;
      }
      if (!known.includes(name)) {
        this.report(key, where || name, `unknown key "${name}" (known here: ${known.join(', ')})`);
        continue;
      }
      own.push({ name, key, value, where: at });
    }
    const seen = new Set(own.map((f) => f.name));
    return [...own, ...merged.filter((f) => !seen.has(f.name))];
  }

  /** The entries of a mapping whose keys are free names (window names, network names). */
  entries(node: Node | null, where: string, what: string): Field[] | undefined {
    const map = this.resolve(node);
    if (map === null) return [];
    if (!isMap(map)) {
      this.report(map, where, `must be a mapping of ${what}`);
      return undefined;
    }
    const out: Field[] = [];
    for (const pair of map.items) {
      const key = pair.key as Node | null;
      if (!isScalar(key) || (typeof key.value !== 'string' && typeof key.value !== 'number') || key.value === '') {
        this.report(key, where, `keys must be ${what}`);
        continue;
      }
      const name = String(key.value);
      out.push({ name, key, value: (pair.value ?? null) as Node | null, where: `${where}.${name}` });
    }
    return out;
  }

  /** The items of a sequence; a null value counts as empty. */
  items(node: Node | null, where: string, what: string): Node[] | undefined {
    const seq = this.resolve(node);
    if (seq === null) return [];
    if (!isSeq(seq)) {
      this.report(seq, where, `must be a list of ${what} (lines starting with "- ")`);
      return undefined;
    }
    return seq.items.map((n) => this.resolve(n as Node | null)).filter((n): n is Node => n !== null);
  }

  string(f: Field): string | undefined {
    const v = this.scalar(f);
    if (v === undefined) return undefined;
    if (typeof v.value === 'string' && v.value !== '') return v.value;
    if (typeof v.value === 'string') this.report(v, f.where, 'is empty');
    else this.report(v, f.where, `must be text; quote it: "${String(v.source ?? v.value)}"`);
    return undefined;
  }

  /** A string that may be empty (a name prefix). */
  text(f: Field): string | undefined {
    const v = this.scalar(f);
    if (v === undefined) return undefined;
    if (typeof v.value === 'string') return v.value;
    this.report(v, f.where, `must be text; quote it: "${String(v.source ?? v.value)}"`);
    return undefined;
  }

  int(f: Field, min: number): number | undefined {
    const v = this.scalar(f);
    if (v === undefined) return undefined;
    if (typeof v.value === 'number' && Number.isInteger(v.value) && v.value >= min) return v.value;
    this.report(v, f.where, `must be a whole number${min === 0 ? ' (0 or more)' : min === 1 ? ' (1 or more)' : ''}, not ${show(v)}`);
    return undefined;
  }

  bool(f: Field): boolean | undefined {
    const v = this.scalar(f);
    if (v === undefined) return undefined;
    if (typeof v.value === 'boolean') return v.value;
    this.report(v, f.where, `must be true or false, not ${show(v)}`);
    return undefined;
  }

  oneOf<T extends string>(f: Field, choices: readonly T[]): T | undefined {
    const v = this.scalar(f);
    if (v === undefined) return undefined;
    if (typeof v.value === 'string' && (choices as readonly string[]).includes(v.value)) return v.value as T;
    this.report(v, f.where, `must be one of ${choices.join(', ')}, not ${show(v)}`);
    return undefined;
  }

  /** A scalar's value, for readers of their own (sizes, times); reports a mapping or list. */
  scalar(f: Field): Scalar | undefined {
    const v = this.resolve(f.value);
    if (v === null || (isScalar(v) && v.value === null)) {
      this.report(v ?? f.key, f.where, 'has no value');
      return undefined;
    }
    if (!isScalar(v)) {
      this.report(v, f.where, 'must be a single value, not a mapping or a list');
      return undefined;
    }
    return v;
  }

  resolve(node: Node | null | undefined): Node | null {
    let n = node ?? null;
    for (let depth = 0; n !== null && isAlias(n) && depth < 16; depth++) n = (n.resolve(this.doc) as Node | undefined) ?? null;
    return n;
  }

  private mergeSources(value: Node | null, where: string): Node[] {
    const v = this.resolve(value);
    const sources = v !== null && isSeq(v) ? v.items.map((n) => this.resolve(n as Node | null)) : [v];
    return sources.filter((s): s is Node => {
      if (s !== null && isMap(s)) return true;
      this.report(s ?? value, where, '"<<" must merge a mapping (<<: *name)');
      return false;
    });
  }
}

function show(v: Scalar): string {
  return typeof v.value === 'string' ? `"${v.value}"` : String(v.source ?? v.value);
}
