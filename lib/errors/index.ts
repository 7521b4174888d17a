// The error base every oneswap module throws. The CLI prints `message` as one line (plus `hint`
// when set) and exits with `exitCode`; nothing else reaches the user, so messages must name the
// object, the call and what to do.

export type ErrorKind =
  | 'usage'          // bad command line or configuration
  | 'auth'           // wrong credentials
  | 'connection'     // host unreachable, TLS mismatch, dropped connection
  | 'not-found'      // unknown VM, datastore, network, image
  | 'conflict'       // name taken, ambiguous VM, wrong power state
  | 'capacity'       // datastore too small, disk full
  | 'remote'         // the remote API refused (vSphere fault, oned error)
  | 'data'           // corrupt or short data
  | 'conversion'     // the guest conversion failed (the images keep the copied bytes)
  | 'interrupted'    // Ctrl-C, SIGTERM
  | 'internal';

const EXIT_CODES: Record<ErrorKind, number> = {
  usage: 2,
  auth: 3,
  connection: 4,
  'not-found': 5,
  conflict: 6,
  capacity: 7,
  remote: 8,
  data: 9,
  conversion: 10,
  interrupted: 130,
  internal: 1,
};

/**
 * The faces that tell a user what to change: the import's command line (flags such as
 * --enable-cbt) and a plan file (keys such as enableCbt), checked by `plan check`.
 */
export type Face = 'cli' | 'plan';

/** A hint that names a setting, in the words of each face. */
export type FaceHint = Readonly<Record<Face, string>>;

export class OneswapError extends Error {
  readonly kind: ErrorKind;
  /** What to do, as the command line says it. */
  readonly hint: string | undefined;
  /** What to do, as a plan file says it, when that differs. */
  readonly planHint: string | undefined;

  constructor(kind: ErrorKind, message: string, options?: { hint?: string | FaceHint; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OneswapError';
    this.kind = kind;
    const hint = options?.hint;
    this.hint = typeof hint === 'object' ? hint.cli : hint;
    this.planHint = typeof hint === 'object' ? hint.plan : undefined;
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind];
  }
}

/** One line for the user, whatever was thrown; the hint in the words of the face that shows it. */
export function describeError(err: unknown, face: Face = 'cli'): string {
  if (err instanceof OneswapError) {
    const hint = face === 'plan' ? (err.planHint ?? err.hint) : err.hint;
    return hint ? `${err.message} (${hint})` : err.message;
  }
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}

export function exitCodeOf(err: unknown): number {
  return err instanceof OneswapError ? err.exitCode : 1;
}

/**
 * A reason an operation cannot go ahead, found before it changes anything, with a stable code
 * that a report of many such checks (`plan check`) keys on. A single import throws `error`.
 */
export interface Refusal {
  readonly code: string;
  readonly error: OneswapError;
}

/** Throws the first refusal, the one a single import meets first; none: returns. */
export function throwFirst(refusals: readonly Refusal[]): void {
  const [first] = refusals;
  if (first !== undefined) throw first.error;
}
