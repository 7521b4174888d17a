// The production node_modules of a checkout, found offline from npm's lock data: every package the
// lock does not mark `dev` (npm ci installed them all). Reads node_modules/.package-lock.json (what
// is installed) or else package-lock.json; both are lockfile v2/v3 with a `packages` map.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface ProductionModules {
  /** every production package directory, relative to the root (`node_modules/a`, `node_modules/a/node_modules/b`) */
  all: string[];
  /** those directly in the root's node_modules (copying these copies the nested ones too) */
  topLevel: string[];
}

interface LockPackage {
  dev?: boolean;
  link?: boolean;
}

/** Production package directories listed by a lock file's `packages` map (pure). */
export function productionPackages(lock: unknown): string[] {
  const packages = (lock as { packages?: Record<string, LockPackage> } | null)?.packages;
  if (!packages || typeof packages !== 'object') {
    throw new Error('the lock file has no "packages" map (npm 7 or later writes one): run npm ci first');
  }
  return Object.entries(packages)
    .filter(([key, pkg]) => key.startsWith('node_modules/') && !pkg.dev)
    .map(([key]) => key)
    .sort();
}

/** A directory directly in the root's node_modules: `node_modules/x` or `node_modules/@scope/x`. */
export function isTopLevel(dir: string): boolean {
  const rest = dir.slice('node_modules/'.length);
  return !rest.includes('/node_modules/') && (rest.startsWith('@') ? rest.split('/').length === 2 : !rest.includes('/'));
}

/** The production modules installed in `root`; throws when one is missing (run npm ci). */
export function productionModules(root: string): ProductionModules {
  const hidden = path.join(root, 'node_modules', '.package-lock.json');
  const lockFile = existsSync(hidden) ? hidden : path.join(root, 'package-lock.json');
  if (!existsSync(lockFile)) throw new Error(`no ${path.join(root, 'package-lock.json')}: run npm ci first`);
  const all = productionPackages(JSON.parse(readFileSync(lockFile, 'utf8')));
  const missing = all.filter((dir) => !existsSync(path.join(root, dir, 'package.json')));
  if (missing.length > 0) throw new Error(`${missing.length} production modules are not installed (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}): run npm ci first`);
  return { all, topLevel: all.filter(isTopLevel) };
}
