/**
 * Runs datastore driver scripts the way oned 7.4's one_datastore MAD does
 * (reference §5.1–5.4, §5.7): `<remotes>/datastore/<DS_MAD>/<action> <id>`,
 * base64 of the DS_DRIVER_ACTION_DATA on stdin without a trailing newline,
 * cwd = oned's var dir, a plain environment without secrets. Failure = non-zero
 * exit; stderr lines `^(ERROR|INFO|WARN|DEBUG):` go to the oned log, the other
 * lines are concatenated with no separator and become the error text.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export type DriverAction = 'cp' | 'mkfs' | 'stat' | 'rm' | 'monitor' | 'clone' | 'snap_delete' | 'snap_revert' | 'snap_flatten';

export interface DriverLogEntry {
  seq: number;
  action: DriverAction;
  dsMad: string;
  script: string;
  argv: string[];
  stdin: string;
  /** decoded DS_DRIVER_ACTION_DATA */
  payload: string;
  stdout: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  /** true when a test hook answered instead of the script */
  hooked: boolean;
  startedAt: number;
  durationMs: number;
}

export interface DriverResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  exitCode: number | null;
  /** the "info" oned gets on failure */
  errorText: string;
}

export interface DriverHookContext {
  action: DriverAction;
  dsMad: string;
  argv: string[];
  stdin: string;
  payload: string;
}
export type DriverHook = (ctx: DriverHookContext) =>
  | Promise<{ stdout?: string; stderr?: string; exitCode?: number } | undefined>
  | { stdout?: string; stderr?: string; exitCode?: number }
  | undefined;

export interface DriverRunnerOptions {
  remotesDir: string;
  varDir: string;
  /** DS_MAD name → directory holding its action scripts */
  driverDirs?: Record<string, string>;
}

const LOG_LINE = /^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*(.*)$/;

/** Splits stderr into oned.log lines and the error text (§5.4, 5.7). */
export function splitStderr(stderr: string): { logLines: string[]; errorText: string } {
  const logLines: string[] = [];
  let errorText = '';
  for (const line of stderr.split('\n')) {
    if (LOG_LINE.test(line)) logLines.push(line);
    else errorText += line;
  }
  return { logLines, errorText };
}

export class DriverRunner {
  readonly log: DriverLogEntry[] = [];
  readonly onedLog: string[] = [];
  private hooks = new Map<DriverAction, DriverHook>();
  private seq = 0;
  private running = new Set<Promise<unknown>>();

  constructor(private readonly opts: DriverRunnerOptions) {}

  setHook(action: DriverAction, hook: DriverHook | null): void {
    if (hook) this.hooks.set(action, hook);
    else this.hooks.delete(action);
  }

  scriptPath(dsMad: string, action: DriverAction, kind: 'datastore' | 'tm' = 'datastore'): string {
    const own = kind === 'datastore' ? this.opts.driverDirs?.[dsMad] : undefined;
    if (own !== undefined) return path.join(own, action);
    return path.join(this.opts.remotesDir, kind, dsMad, action);
  }

  hasScript(dsMad: string, action: DriverAction, kind: 'datastore' | 'tm' = 'datastore'): boolean {
    return existsSync(this.scriptPath(dsMad, action, kind));
  }

  /** Resolves when every driver run started so far has finished. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  run(action: DriverAction, dsMad: string, id: string, payloadXml: string, timeoutMs?: number, kind: 'datastore' | 'tm' = 'datastore'): Promise<DriverResult> {
    const p = this.doRun(action, dsMad, id, payloadXml, timeoutMs, kind);
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  private async doRun(action: DriverAction, dsMad: string, id: string, payloadXml: string, timeoutMs: number | undefined, kind: 'datastore' | 'tm'): Promise<DriverResult> {
    const stdin = Buffer.from(payloadXml, 'utf8').toString('base64');
    const argv = [id];
    const script = this.scriptPath(dsMad, action, kind);
    const entry: DriverLogEntry = {
      seq: this.seq++,
      action,
      dsMad,
      script,
      argv,
      stdin,
      payload: payloadXml,
      stdout: '',
      stderr: '',
      exitCode: null,
      timedOut: false,
      hooked: false,
      startedAt: Date.now(),
      durationMs: 0,
    };
    const hook = this.hooks.get(action);
    let res: { stdout: string; stderr: string; exitCode: number | null; timedOut: boolean } | undefined;
    if (hook) {
      const h = await hook({ action, dsMad, argv, stdin, payload: payloadXml });
      if (h) {
        entry.hooked = true;
        res = { stdout: h.stdout ?? '', stderr: h.stderr ?? '', exitCode: h.exitCode ?? 0, timedOut: false };
      }
    }
    if (!res) {
      if (!existsSync(path.dirname(script))) {
        res = { stdout: '', stderr: `Datastore driver '${dsMad}' not available\n`, exitCode: 255, timedOut: false };
      } else if (!existsSync(script)) {
        res = { stdout: '', stderr: `Action ${action} not implemented by driver ${dsMad}\n`, exitCode: 255, timedOut: false };
      } else {
        res = await this.spawnScript(script, argv, stdin, timeoutMs);
      }
    }
    entry.stdout = res.stdout;
    entry.stderr = res.stderr;
    entry.exitCode = res.exitCode;
    entry.timedOut = res.timedOut;
    entry.durationMs = Date.now() - entry.startedAt;
    this.log.push(entry);
    const { logLines, errorText } = splitStderr(res.stderr);
    for (const l of logLines) this.onedLog.push(`[${action.toUpperCase()} ${id}] ${l}`);
    const ok = res.exitCode === 0 && !res.timedOut;
    return {
      ok,
      stdout: res.stdout,
      stderr: res.stderr,
      exitCode: res.exitCode,
      errorText: res.timedOut ? `Timeout executing ${action.toUpperCase()}` : errorText,
    };
  }

  private spawnScript(script: string, argv: string[], stdin: string, timeoutMs: number | undefined): Promise<{ stdout: string; stderr: string; exitCode: number | null; timedOut: boolean }> {
    return new Promise((resolve) => {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: this.opts.varDir,
        LANG: 'C.UTF-8',
        LC_ALL: 'C.UTF-8',
        ONE_LOCATION: '',
        TMPDIR: process.env.TMPDIR ?? '/tmp',
      };
      const child = spawn(script, argv, { cwd: this.opts.varDir, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      let settled = false;
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdin.on('error', () => undefined);
      child.stdin.end(stdin);
      const timer =
        timeoutMs !== undefined
          ? setTimeout(() => {
              timedOut = true;
              try {
                if (child.pid) process.kill(-child.pid, 'SIGKILL');
              } catch {
                child.kill('SIGKILL');
              }
            }, timeoutMs)
          : undefined;
      const finish = (code: number | null, errText?: string): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        resolve({ stdout, stderr: errText ? stderr + errText : stderr, exitCode: code, timedOut });
      };
      child.on('error', (err) => finish(255, `${err.message}\n`));
      child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 255)));
    });
  }
}
