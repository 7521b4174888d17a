/**
 * The simulator's own remotes tree, laid out like a real frontend's
 * `/var/lib/one/remotes` (reference §5.1, §6.1, §7.1): every driver of a kind
 * side by side, so a product driver can reach the stock one as
 * `$(dirname $0)/../fs/<action>` (with `..` taken lexically, e.g. path.join or `cd -L`):
 *
 *   <var>/remotes/datastore/fs         → symlink to the stock-like scripts (remotes/datastore/fs here)
 *   <var>/remotes/datastore/libfs.sh   → symlink (helpers of fs)
 *   <var>/remotes/datastore/xpath.mjs  → symlink
 *   <var>/remotes/datastore/<name>     → directory symlink to an extra driver's `dir`
 *   <var>/remotes/market/<name>        → directory symlink to a market driver's `dir`
 *
 * Scripts run as `<var>/remotes/<kind>/<name>/<action>`, so `$0` keeps that path. A
 * directory symlink (not one link per file) keeps `cd -P "$(dirname "$0")/../../.."`
 * (the product's driver/shim.sh) resolving to the directory the driver really lives in.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';

export interface ExtraDriver {
  dir: string;
  conf?: Record<string, string>;
}

const KINDS = ['datastore', 'market', 'tm'] as const;

/**
 * (Re)creates `<varDir>/remotes`: links every entry of `<stockDir>/<kind>/` (datastore,
 * market, tm), then the extra datastore and market drivers. Returns the tree's path.
 */
export function buildRemotesTree(
  varDir: string,
  stockDir: string,
  drivers: Record<string, ExtraDriver> = {},
  marketDrivers: Record<string, ExtraDriver> = {},
): string {
  const root = path.join(varDir, 'remotes');
  // rmSync does not follow symlinks: only our links go, never what they point to
  rmSync(root, { recursive: true, force: true });
  for (const kind of KINDS) {
    mkdirSync(path.join(root, kind), { recursive: true });
    const src = path.resolve(stockDir, kind);
    if (!existsSync(src)) continue;
    for (const entry of readdirSync(src)) symlinkSync(path.join(src, entry), path.join(root, kind, entry));
  }
  const link = (kind: 'datastore' | 'market', name: string, d: ExtraDriver): void => {
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === '.' || name === '..') throw new Error(`bad ${kind} driver name "${name}"`);
    const target = path.resolve(d.dir);
    if (!existsSync(target) || !statSync(target).isDirectory()) throw new Error(`${kind} driver "${name}": ${target} is not a directory`);
    const at = path.join(root, kind, name);
    rmSync(at, { force: true, recursive: false });
    symlinkSync(target, at, 'dir');
  };
  for (const [name, d] of Object.entries(drivers)) link('datastore', name, d);
  for (const [name, d] of Object.entries(marketDrivers)) link('market', name, d);
  return root;
}
