// Registering the oneswap drivers in oned.conf, as pure functions over the file's text.
//
// register() appends `,oneswap` to the `-d` list of DATASTORE_MAD and to the `-m` list of
// MARKET_MAD (only where it is not listed yet), and appends at the end of the file one block,
// between two marker comments, holding DS_MAD_CONF and MARKET_MAD_CONF for oneswap (each only when
// no such entry exists outside the block). The block's second line records which lists register()
// extended, so that unregister() takes out exactly what register() put in:
// unregister(register(x).text).text === x, byte for byte. register() is idempotent: a file that
// already registers oneswap (both lists, both confs) is left as it is; otherwise it starts from
// unregister(text), so a half-registered file ends up registered exactly once.
//
// The reader knows oned.conf's syntax (the OpenNebula template syntax): `NAME = value`,
// `NAME = [ KEY = value, ... ]`, values quoted ("..." may span lines, \" escapes) or bare,
// `#` comments to the end of the line, attribute names case-insensitive.

export const DRIVER_NAME = 'oneswap';

export const BEGIN_MARKER = '# BEGIN oneswap drivers (added by oneswap install.sh; install.sh --uninstall removes this block)';
export const END_MARKER = '# END oneswap drivers';
const RECORD_PREFIX = '# oneswap was appended to: ';
const RECORD_NONE = 'no list';

export const DS_MAD_CONF_BLOCK = `DS_MAD_CONF = [
    NAME = "${DRIVER_NAME}",
    REQUIRED_ATTRS = "",
    PERSISTENT_ONLY = "NO",
    MARKETPLACE_ACTIONS = ""
]
`;

export const MARKET_MAD_CONF_BLOCK = `MARKET_MAD_CONF = [
    NAME = "${DRIVER_NAME}",
    SUNSTONE_NAME = "VMware vCenter (oneswap)",
    REQUIRED_ATTRS = "VCENTER_HOST,ONESWAP_CREDENTIALS",
    APP_ACTIONS = "monitor",
    PUBLIC = "yes"
]
`;

/** oned.conf cannot be edited safely (missing block, damaged marker block, syntax oned would refuse). */
export class OnedConfError extends Error {
  override name = 'OnedConfError';
}

export interface EditResult {
  /** the new file text (equal to the input when nothing changed) */
  text: string;
  changed: boolean;
  /** what was done or found, one line each, for the person installing */
  messages: string[];
}

/** A driver list in the ARGUMENTS of a *_MAD block, as the Ruby MAD's GetoptLong reads it. */
interface ListSpec {
  /** the vector attribute: DATASTORE_MAD or MARKET_MAD */
  attr: string;
  short: string;
  long: string;
  /** how the record line names it */
  record: string;
}

const LISTS: readonly ListSpec[] = [
  { attr: 'DATASTORE_MAD', short: '-d', long: '--ds-types', record: 'DATASTORE_MAD -d' },
  { attr: 'MARKET_MAD', short: '-m', long: '--market-types', record: 'MARKET_MAD -m' },
];

// ---------------------------------------------------------------------------------------------
// Reading

type TokenKind = 'word' | 'string' | 'eq' | 'open' | 'close' | 'comma';

interface Token {
  kind: TokenKind;
  /** offsets of the value: for a string, its content without the quotes */
  start: number;
  end: number;
}

interface Pair {
  key: string;
  value: Token;
}

interface VectorAttr {
  name: string;
  /** offset of the attribute name and just past its closing bracket */
  start: number;
  end: number;
  pairs: Pair[];
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

const SPECIAL = new Set(['#', '"', '=', '[', ']', ',']);

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
      i++;
    } else if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= n) throw new OnedConfError(`unterminated quoted value starting at line ${lineOf(text, i)}`);
      tokens.push({ kind: 'string', start: i + 1, end: j });
      i = j + 1;
    } else if (c === '=' || c === '[' || c === ']' || c === ',') {
      const kind: TokenKind = c === '=' ? 'eq' : c === '[' ? 'open' : c === ']' ? 'close' : 'comma';
      tokens.push({ kind, start: i, end: i + 1 });
      i++;
    } else {
      let j = i;
      while (j < n && !SPECIAL.has(text[j]!) && !/\s/.test(text[j]!)) j++;
      tokens.push({ kind: 'word', start: i, end: j });
      i = j;
    }
  }
  return tokens;
}

/** The vector attributes (`NAME = [ ... ]`) at the top level of the file, in order. */
function vectorAttrs(text: string): VectorAttr[] {
  const tokens = tokenize(text);
  const out: VectorAttr[] = [];
  const word = (t: Token | undefined) => (t?.kind === 'word' ? text.slice(t.start, t.end) : undefined);
  let i = 0;
  while (i < tokens.length) {
    const name = word(tokens[i]);
    if (name !== undefined && tokens[i + 1]?.kind === 'eq' && tokens[i + 2]?.kind === 'open') {
      const attr: VectorAttr = { name: name.toUpperCase(), start: tokens[i]!.start, end: -1, pairs: [] };
      let j = i + 3;
      for (; j < tokens.length && tokens[j]!.kind !== 'close'; j++) {
        const t = tokens[j]!;
        if (t.kind === 'open') throw new OnedConfError(`"[" inside ${name} = [ ... ] at line ${lineOf(text, t.start)}`);
        const key = word(t);
        const value = tokens[j + 2];
        if (key !== undefined && tokens[j + 1]?.kind === 'eq' && (value?.kind === 'string' || value?.kind === 'word')) {
          attr.pairs.push({ key: key.toUpperCase(), value });
          j += 2;
        }
      }
      if (j >= tokens.length) throw new OnedConfError(`${name} = [ at line ${lineOf(text, tokens[i]!.start)} has no closing "]"`);
      attr.end = tokens[j]!.end;
      out.push(attr);
      i = j + 1;
    } else {
      i++;
    }
  }
  return out;
}

function valueText(text: string, t: Token): string {
  return text.slice(t.start, t.end);
}

function pairValue(attr: VectorAttr, key: string): Token | undefined {
  let found: Token | undefined;
  for (const p of attr.pairs) if (p.key === key) found = p.value;
  return found;
}

/** The one block named `attr`; a missing block is an error (register/unregister cannot do their job). */
function theBlock(text: string, vectors: VectorAttr[], attr: string): VectorAttr {
  const blocks = vectors.filter((v) => v.name === attr);
  if (blocks.length === 0) {
    throw new OnedConfError(`no ${attr} = [ ... ] block: is this OpenNebula's oned.conf? add it (see the stock oned.conf) and run again`);
  }
  if (blocks.length > 1) {
    const lines = blocks.map((b) => lineOf(text, b.start)).join(', ');
    throw new OnedConfError(`${blocks.length} ${attr} = [ ... ] blocks (lines ${lines}): keep one and run again`);
  }
  return blocks[0]!;
}

function hasNamedConf(text: string, vectors: VectorAttr[], attr: string, name: string): boolean {
  return vectors.some((v) => {
    if (v.name !== attr) return false;
    const n = pairValue(v, 'NAME');
    return n !== undefined && valueText(text, n).trim() === name;
  });
}

interface ListLocation {
  /** absolute offsets of the comma-separated list inside the file */
  start: number;
  end: number;
  items: string[];
}

type ListLookup =
  | { kind: 'no-arguments' }
  | { kind: 'all' } // no such option: the MAD enables every driver directory it finds
  | { kind: 'empty' } // the option without a value: the MAD enables no driver at all
  | ({ kind: 'list' } & ListLocation);

/** Where the `-d` / `-m` list is in the block's ARGUMENTS; GetoptLong's rules, the last one wins. */
function findList(text: string, block: VectorAttr, spec: ListSpec): ListLookup {
  const args = pairValue(block, 'ARGUMENTS');
  if (!args) return { kind: 'no-arguments' };
  const words: Array<{ w: string; at: number }> = [];
  const re = /\S+/g;
  const value = valueText(text, args);
  for (let m = re.exec(value); m; m = re.exec(value)) words.push({ w: m[0], at: args.start + m.index });
  let found: ListLookup = { kind: 'all' };
  const list = (start: number, s: string): ListLookup =>
    s === '' ? { kind: 'empty' } : { kind: 'list', start, end: start + s.length, items: s.split(',') };
  for (let k = 0; k < words.length; k++) {
    const { w, at } = words[k]!;
    if (w === spec.short || w === spec.long) {
      const next = words[k + 1];
      if (next && !next.w.startsWith('-')) {
        found = list(next.at, next.w);
        k++;
      } else {
        found = { kind: 'empty' };
      }
    } else if (w.startsWith(`${spec.long}=`)) {
      found = list(at + spec.long.length + 1, w.slice(spec.long.length + 1));
    } else if (w.startsWith(spec.short) && !w.startsWith('--')) {
      found = list(at + spec.short.length, w.slice(spec.short.length));
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// The marker block

interface MarkerBlock {
  /** offsets of the text to cut: the separator newline before the block through the end marker's line */
  cutStart: number;
  cutEnd: number;
  /** the lists this block says register() extended */
  lists: string[];
}

function markerBlocks(text: string): MarkerBlock[] {
  const blocks: MarkerBlock[] = [];
  let open: { lineStart: number; lists: string[] } | undefined;
  let offset = 0;
  while (offset < text.length) {
    const nl = text.indexOf('\n', offset);
    const lineEnd = nl < 0 ? text.length : nl + 1;
    const line = text.slice(offset, nl < 0 ? text.length : nl).replace(/\r$/, '');
    if (line === BEGIN_MARKER) {
      if (open) throw new OnedConfError(`"${BEGIN_MARKER}" twice without "${END_MARKER}" (line ${lineOf(text, offset)}): fix oned.conf by hand`);
      open = { lineStart: offset, lists: [] };
    } else if (open && line.startsWith(RECORD_PREFIX)) {
      open.lists = line
        .slice(RECORD_PREFIX.length)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '' && s !== RECORD_NONE);
    } else if (line === END_MARKER) {
      if (!open) throw new OnedConfError(`"${END_MARKER}" without "${BEGIN_MARKER}" (line ${lineOf(text, offset)}): fix oned.conf by hand`);
      // register() put one newline before the block; take it back with the block.
      const cutStart = open.lineStart > 0 && text[open.lineStart - 1] === '\n' ? open.lineStart - 1 : open.lineStart;
      blocks.push({ cutStart, cutEnd: lineEnd, lists: open.lists });
      open = undefined;
    }
    offset = lineEnd;
  }
  if (open) throw new OnedConfError(`"${BEGIN_MARKER}" at line ${lineOf(text, open.lineStart)} has no "${END_MARKER}": fix oned.conf by hand`);
  return blocks;
}

/** Removes the last `oneswap` item of a list and the comma that joined it. */
function withoutDriver(text: string, loc: ListLocation): string {
  let k = -1;
  for (let i = 0; i < loc.items.length; i++) if (loc.items[i] === DRIVER_NAME) k = i;
  if (k < 0) return text;
  let itemStart = loc.start;
  for (let i = 0; i < k; i++) itemStart += loc.items[i]!.length + 1;
  const itemEnd = itemStart + DRIVER_NAME.length;
  if (k > 0) return text.slice(0, itemStart - 1) + text.slice(itemEnd);
  if (loc.items.length > 1) return text.slice(0, itemStart) + text.slice(itemEnd + 1);
  return text.slice(0, itemStart) + text.slice(itemEnd);
}

// ---------------------------------------------------------------------------------------------
// register / unregister

/**
 * Takes out what register() added: every marker block (with the newline before it) and `oneswap`
 * from each list the block records. A file without a marker block is returned unchanged.
 */
export function unregister(text: string): EditResult {
  const messages: string[] = [];
  let out = text;
  const blocks = markerBlocks(text);
  const recorded = new Set<string>();
  for (const b of [...blocks].reverse()) {
    out = out.slice(0, b.cutStart) + out.slice(b.cutEnd);
    for (const l of b.lists) recorded.add(l);
  }
  if (blocks.length > 0) messages.push('removed the DS_MAD_CONF/MARKET_MAD_CONF block of oneswap');
  // A file without our block is returned as it is, even one this reader cannot follow.
  const parse = (needed: boolean): VectorAttr[] | undefined => {
    try {
      return vectorAttrs(out);
    } catch (e) {
      if (needed) throw e;
      return undefined;
    }
  };
  for (const spec of LISTS) {
    const vectors = parse(recorded.has(spec.record));
    if (!vectors) continue;
    const block = vectors.filter((v) => v.name === spec.attr);
    const found = block.length === 1 ? findList(out, block[0]!, spec) : undefined;
    const listed = found?.kind === 'list' && found.items.includes(DRIVER_NAME);
    if (recorded.has(spec.record) && found?.kind === 'list' && listed) {
      out = withoutDriver(out, found);
      messages.push(`removed oneswap from the ${spec.record} list`);
    } else if (listed) {
      messages.push(`the ${spec.record} list still names oneswap (install.sh did not add it there): left as it is`);
    }
  }
  const vectors = parse(false) ?? [];
  for (const attr of ['DS_MAD_CONF', 'MARKET_MAD_CONF']) {
    if (hasNamedConf(out, vectors, attr, DRIVER_NAME)) {
      messages.push(`a ${attr} for oneswap outside install.sh's block stays as it is`);
    }
  }
  return { text: out, changed: out !== text, messages };
}

/**
 * Registers the oneswap drivers (see the top of this file). Throws OnedConfError when DATASTORE_MAD
 * or MARKET_MAD is missing or oned.conf cannot be read safely; the caller then leaves the file alone.
 */
export function register(text: string): EditResult {
  // Registered already (by an earlier run, or by hand): leave every byte where it is.
  if (isRegistered(text)) return { text, changed: false, messages: ['oned.conf already registers oneswap'] };
  const base = unregister(text).text;
  const messages: string[] = [];
  let out = base;
  const extended: string[] = [];
  for (const spec of LISTS) {
    const vectors = vectorAttrs(out);
    const block = theBlock(out, vectors, spec.attr);
    const found = findList(out, block, spec);
    if (found.kind === 'no-arguments') {
      messages.push(`${spec.attr} has no ARGUMENTS: the MAD enables every driver it finds, oneswap included`);
    } else if (found.kind === 'all') {
      messages.push(`${spec.attr} ARGUMENTS has no ${spec.short} list: the MAD enables every driver it finds, oneswap included`);
    } else if (found.kind === 'empty') {
      throw new OnedConfError(`${spec.attr} ARGUMENTS has ${spec.short} without a list of drivers (so none is enabled): give it one, e.g. "${spec.short} fs", and run again`);
    } else if (found.items.includes(DRIVER_NAME)) {
      messages.push(`the ${spec.record} list already names oneswap`);
    } else {
      out = `${out.slice(0, found.end)},${DRIVER_NAME}${out.slice(found.end)}`;
      extended.push(spec.record);
      messages.push(`appended oneswap to the ${spec.record} list`);
    }
  }
  const vectors = vectorAttrs(out);
  const confs: string[] = [];
  for (const [attr, block] of [
    ['DS_MAD_CONF', DS_MAD_CONF_BLOCK],
    ['MARKET_MAD_CONF', MARKET_MAD_CONF_BLOCK],
  ] as const) {
    if (hasNamedConf(out, vectors, attr, DRIVER_NAME)) {
      messages.push(`oned.conf already has a ${attr} for oneswap: not adding another`);
    } else {
      confs.push(block);
      messages.push(`added ${attr} for oneswap`);
    }
  }
  if (extended.length > 0 || confs.length > 0) {
    const record = RECORD_PREFIX + (extended.length > 0 ? extended.join(', ') : RECORD_NONE);
    out += `\n${BEGIN_MARKER}\n${record}\n${confs.join('\n')}${END_MARKER}\n`;
  }
  return { text: out, changed: out !== text, messages };
}

/** True when oned.conf enables both drivers and defines both confs (with or without our block). */
export function isRegistered(text: string): boolean {
  const vectors = vectorAttrs(text);
  for (const spec of LISTS) {
    const blocks = vectors.filter((v) => v.name === spec.attr);
    if (blocks.length !== 1) return false;
    const found = findList(text, blocks[0]!, spec);
    if (found.kind === 'empty' || (found.kind === 'list' && !found.items.includes(DRIVER_NAME))) return false;
  }
  return hasNamedConf(text, vectors, 'DS_MAD_CONF', DRIVER_NAME) && hasNamedConf(text, vectors, 'MARKET_MAD_CONF', DRIVER_NAME);
}
