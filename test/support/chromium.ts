// Debian's Chromium, headless, for tests that open a page as people will: run as root (no
// sandbox), with a fresh profile, and with the network made unusable (every host name fails to
// resolve, every connection goes to a proxy on a closed loopback port), so a page that needed
// anything from outside shows it.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = '/usr/bin/chromium';

/** Why browser tests cannot run here, or undefined when they can. */
export function chromiumSkip(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (Debian package chromium; ./install.sh --dev installs it)`;
}

/** A loopback port nothing listens on: bound by us, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs Chromium headless on a local file with extra flags; resolves to its stdout. */
export async function runChromium(file: string, flags: readonly string[]): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'oneswap-chromium-'));
  try {
    const port = await closedPort();
    const args = [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${profile}`,
      '--host-resolver-rules=MAP * ~NOTFOUND',
      `--proxy-server=http://127.0.0.1:${port}`,
      ...flags,
      pathToFileURL(file).href,
    ];
    return await new Promise<string>((resolve, reject) => {
      execFile(CHROMIUM, args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}
