// progress: consumers of the supervisor's events. A live TTY display (a bar per disk with bytes,
// rate and ETA; a line per running conversion, ticking every second), JSON lines (--progress
// json), plain lines for pipes, and the per-run log file; and the text formatting they share with
// other terminal output (bytes, durations, column-aligned tables).

export { ttyDisplay, systemClock, type Clock } from './tty.js';
export { jsonLines, plainLines } from './lines.js';
export { openRunLog, type RunLog } from './log-file.js';
export { describeEvent } from './text.js';
export { RateMeter, formatAbout, formatBytes, formatDuration } from './rate.js';
export { parseSize, parseDuration, parseCutoverAt } from './units.js';
export { renderTable } from './table.js';
