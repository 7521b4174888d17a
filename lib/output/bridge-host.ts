// A BRIDGE_LIST host: where the stock drivers of a datastore without shared storage on the
// frontend do the work that touches the storage, over `ssh <host>` as the OpenNebula user
// (reference: opennebula.md §5.8). oneswap does the same: it checks the hosts before an import,
// picks one per image as the stock drivers do, and runs what must touch an image file there
// (qemu-nbd for the bytes, qemu-img and coreutils for the placeholder), never through a local path.

import { OneswapError } from '../errors/index.js';

/** One word for a POSIX shell, whatever it holds. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The host that works on image `imageId`: BRIDGE_LIST[id % n], as the stock drivers choose it, among
 * the hosts that answered the datastore's check (the stock drivers drop hosts OpenNebula lists as
 * off or disabled; one that does not answer ssh is of no more use).
 */
export function bridgeHostFor(bridges: readonly string[], imageId: number): string {
  if (bridges.length === 0) throw new OneswapError('internal', 'no bridge host to choose from');
  return bridges[imageId % bridges.length]!;
}

export interface OnBridgeOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface BridgeRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a shell script on the host (`ssh <host> bash -s`, the script on stdin as the stock
 * drivers send theirs). The script's own exit codes are the caller's to read; ssh's (255: no
 * connection, no login) become a connection error naming the host.
 */
export async function onBridge(host: string, script: string, options: OnBridgeOptions = {}): Promise<BridgeRun> {
  // Loaded here: execa is a fifth of oneswap's start-up, and most runs never reach a bridge host.
  const { execa } = await import('execa');
  const r = await execa('ssh', ['-o', 'BatchMode=yes', host, 'bash -s'], {
    input: script,
    reject: false,
    stripFinalNewline: true,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    timeout: options.timeoutMs ?? 120_000,
  });
  if (r.isCanceled) throw new OneswapError('interrupted', `the work on the bridge host ${host} was stopped`);
  if ((r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new OneswapError('usage', 'ssh is not installed', { hint: 'install the Debian package openssh-client: BRIDGE_LIST hosts are reached over ssh' });
  if (r.timedOut) throw new OneswapError('connection', `the bridge host ${host} did not answer within ${Math.round((options.timeoutMs ?? 120_000) / 1000)} s`);
  const stderr = String(r.stderr);
  if (r.exitCode === 255) throw unreachable(host, stderr);
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr };
}

/** ssh could not log in to the host: what it said, and how OpenNebula's drivers reach it. */
export function unreachable(host: string, sshStderr: string): OneswapError {
  const line = sshStderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Warning:')).at(-1);
  return new OneswapError('connection', `cannot reach the bridge host ${host} over ssh: ${line || 'ssh failed'}`, {
    hint: `check that this user reaches ${host} with \`ssh ${host}\` without a password, as OpenNebula's drivers do`,
  });
}

/** The last line a failed script printed on stderr, for an error message. */
export function lastLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1) ?? '';
}
