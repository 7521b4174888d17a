/**
 * Runs driver scripts the way oned 7.4's MADs do, from the simulator's own
 * remotes tree (`<var>/remotes`, see remotes-tree.ts):
 *
 * - datastore (one_datastore, reference §5.1–5.4, §5.7): `<remotes>/datastore/<DS_MAD>/<action> <id>`,
 *   base64 of the DS_DRIVER_ACTION_DATA on stdin without a trailing newline;
 * - tm monitor of system datastores: `<remotes>/tm/<TM_MAD>/monitor`, same convention;
 * - market (one_market, §7.3): `<remotes>/market/<MARKET_MAD>/<action> <base64 MARKET_DRIVER_ACTION_DATA> <id>`,
 *   the payload in **argv**, stdin closed at once.
 *
 * Always cwd = oned's var dir and a plain environment without secrets. Failure =
 * non-zero exit; stderr lines `^(ERROR|INFO|WARN|DEBUG):` go to the oned log, the
 * other lines are concatenated with no separator and become the error text.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { withHiddenDirs } from '../../support/hidden-dirs.js';

export type DriverAction = 'cp' | 'mkfs' | 'stat' | 'rm' | 'monitor' | 'clone' | 'snap_delete' | 'snap_revert' | 'snap_flatten';
/** Actions the one_market MAD runs from `<remotes>/market/<MARKET_MAD>/` */
export type MarketAction = 'monitor' | 'delete' | 'import';
export type DriverKind = 'datastore' | 'tm' | 'market';

export interface DriverLogEntry {
  seq: number;
  kind: DriverKind;
  action: DriverAction | MarketAction;
  /** the driver name: DS_MAD (datastore), TM_MAD (tm) or MARKET_MAD (market) */
  dsMad: string;
  /** the path executed, i.e. `$0` of the script: `<remotes>/<kind>/<driver>/<action>` */
  script: string;
  argv: string[];
  /** what was written to stdin ('' for market actions) */
  stdin: string;
  /** decoded DS_DRIVER_ACTION_DATA / MARKET_DRIVER_ACTION_DATA */
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
  entry: DriverLogEntry;
}

export interface DriverHookContext {
  kind: DriverKind;
  action: DriverAction | MarketAction;
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
  /** the remotes tree: `<remotesDir>/<kind>/<driver>/<action>` */
  remotesDir: string;
  varDir: string;
  /** added to the plain environment; a PATH here replaces the inherited one (e.g. a bridge's `ssh` first) */
  env?: Record<string, string>;
  /** directories put before PATH (the simulator's own CLI stand-ins) */
  pathDirs?: string[];
}

// `[^\n]*`, not `.*`: like Ruby's `.`, it takes the \r that ssh ends its messages with
const LOG_LINE = /^(ERROR|INFO|WARN|DEBUG):\s+(\d+)?\s*([^\n]*)$/;

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
  private hooks = new Map<string, DriverHook>();
  private seq = 0;
  private running = new Set<Promise<unknown>>();
  /**
   * Directories the drivers run without (withHiddenDirs): a frontend that does not mount the
   * directory of a datastore kept on BRIDGE_LIST hosts, whose drivers must work there over ssh.
   */
  hidden: readonly string[] = [];

  constructor(private readonly opts: DriverRunnerOptions) {}

  get remotesDir(): string {
    return this.opts.remotesDir;
  }

  /** Datastore (and tm) hooks are keyed by action; market hooks by `market:<action>`. */
  setHook(action: DriverAction, hook: DriverHook | null): void {
    this.setKeyedHook(action, hook);
  }

  setMarketHook(action: MarketAction, hook: DriverHook | null): void {
    this.setKeyedHook(`market:${action}`, hook);
  }

  private setKeyedHook(key: string, hook: DriverHook | null): void {
    if (hook) this.hooks.set(key, hook);
    else this.hooks.delete(key);
  }

  scriptPath(driver: string, action: string, kind: DriverKind = 'datastore'): string {
    return path.join(this.opts.remotesDir, kind, driver, action);
  }

  hasScript(driver: string, action: string, kind: DriverKind = 'datastore'): boolean {
    return existsSync(this.scriptPath(driver, action, kind));
  }

  /** Resolves when every driver run started so far has finished. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  /** A datastore (or tm) action: `<script> <id>`, base64 payload on stdin. */
  run(action: DriverAction, dsMad: string, id: string, payloadXml: string, timeoutMs?: number, kind: 'datastore' | 'tm' = 'datastore'): Promise<DriverResult> {
    const b64 = Buffer.from(payloadXml, 'utf8').toString('base64');
    return this.track(this.doRun({ kind, action, driver: dsMad, argv: [id], stdin: b64, payloadXml, timeoutMs, hookKey: action, logId: id }));
  }

  /**
   * A market action as one_market runs it: `<script> <base64> <id>` with the payload
   * in argv and nothing on stdin. `available` = the driver is in the MAD's `-m` list
   * (else FAILURE "Marketplace driver '<x>' not available", no script run).
   */
  runMarket(action: MarketAction, marketMad: string, id: string, payloadXml: string, available: boolean): Promise<DriverResult> {
    const b64 = Buffer.from(payloadXml, 'utf8').toString('base64');
    return this.track(
      this.doRun({ kind: 'market', action, driver: marketMad, argv: [b64, id], stdin: '', payloadXml, hookKey: `market:${action}`, logId: id, available }),
    );
  }

  private track(p: Promise<DriverResult>): Promise<DriverResult> {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  private async doRun(o: {
    kind: DriverKind;
    action: DriverAction | MarketAction;
    driver: string;
    argv: string[];
    stdin: string;
    payloadXml: string;
    timeoutMs?: number;
    hookKey: string;
    logId: string;
    available?: boolean;
  }): Promise<DriverResult> {
    const script = this.scriptPath(o.driver, o.action, o.kind);
    const entry: DriverLogEntry = {
      seq: this.seq++,
      kind: o.kind,
      action: o.action,
      dsMad: o.driver,
      script,
      argv: o.argv,
      stdin: o.stdin,
      payload: o.payloadXml,
      stdout: '',
      stderr: '',
      exitCode: null,
      timedOut: false,
      hooked: false,
      startedAt: Date.now(),
      durationMs: 0,
    };
    const hook = this.hooks.get(o.hookKey);
    let res: { stdout: string; stderr: string; exitCode: number | null; timedOut: boolean } | undefined;
    if (hook) {
      const h = await hook({ kind: o.kind, action: o.action, dsMad: o.driver, argv: o.argv, stdin: o.stdin, payload: o.payloadXml });
      if (h) {
        entry.hooked = true;
        res = { stdout: h.stdout ?? '', stderr: h.stderr ?? '', exitCode: h.exitCode ?? 0, timedOut: false };
      }
    }
    if (!res) {
      if (o.kind === 'market') {
        if (o.available === false) {
          res = { stdout: '', stderr: `Marketplace driver '${o.driver}' not available\n`, exitCode: 255, timedOut: false };
        } else if (!existsSync(script)) {
          // LocalCommand.run rescues the failed exec and reports its message
          res = { stdout: '', stderr: `No such file or directory - ${script}\n`, exitCode: 255, timedOut: false };
        }
      } else if (!existsSync(path.dirname(script))) {
        res = { stdout: '', stderr: `Datastore driver '${o.driver}' not available\n`, exitCode: 255, timedOut: false };
      } else if (!existsSync(script)) {
        res = { stdout: '', stderr: `Action ${o.action} not implemented by driver ${o.driver}\n`, exitCode: 255, timedOut: false };
      }
      res ??= await this.spawnScript(script, o.argv, o.stdin, o.timeoutMs);
    }
    entry.stdout = res.stdout;
    entry.stderr = res.stderr;
    entry.exitCode = res.exitCode;
    entry.timedOut = res.timedOut;
    entry.durationMs = Date.now() - entry.startedAt;
    this.log.push(entry);
    const { logLines, errorText } = splitStderr(res.stderr);
    const tag = o.kind === 'market' ? `MARKET ${o.action.toUpperCase()}` : o.action.toUpperCase();
    for (const l of logLines) this.onedLog.push(`[${tag} ${o.logId}] ${l}`);
    const ok = res.exitCode === 0 && !res.timedOut;
    return {
      ok,
      stdout: res.stdout,
      stderr: res.stderr,
      exitCode: res.exitCode,
      errorText: res.timedOut ? `Timeout executing ${o.action.toUpperCase()}` : errorText,
      entry,
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
        ...this.opts.env,
      };
      if (this.opts.pathDirs && this.opts.pathDirs.length > 0) env.PATH = [...this.opts.pathDirs, env.PATH].join(':');
      const [command, ...args] = withHiddenDirs(this.hidden, [script, ...argv]);
      const child = spawn(command!, args, { cwd: this.opts.varDir, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
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
