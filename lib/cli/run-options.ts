// The options every command that runs a migration step shares: where OpenNebula is, where state
// and logs go, how progress shows (a live TTY display, plain lines, JSON lines), and the opt-in
// guest additions of a conversion.

import { OneswapError } from '../errors/index.js';
import type { EventSink } from '../supervisor/index.js';
import { jsonLines, plainLines, ttyDisplay } from '../progress/index.js';

export interface RunCliOptions {
  progress?: string;
  endpoint?: string;
  stateDir?: string;
  logDir?: string;
  contextPackage?: string;
  guestAgent?: boolean;
}

export function progressDisplay(kind: string | undefined): EventSink {
  const mode = kind ?? (process.stderr.isTTY ? 'tty' : 'plain');
  switch (mode) {
    case 'tty':
      return ttyDisplay(process.stderr);
    case 'plain':
      return plainLines((l) => process.stderr.write(l));
    case 'json':
      return jsonLines((l) => process.stdout.write(l));
    default:
      throw new OneswapError('usage', `--progress "${kind}" is not one of tty, plain, json`);
  }
}

