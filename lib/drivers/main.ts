#!/usr/bin/env node
// Entry of oneswap's OpenNebula drivers: `node main.js <script as oned ran it> <its arguments>`,
// called by driver/shim.sh. Prints what oned expects on stdout; on failure one plain stderr line
// (oned shows it as the image's or marketplace's error) and a non-zero exit. Lines starting with
// INFO:/WARN: go to oned.log only.

import { runDriver } from './index.js';

const code = await runDriver(process.argv[2] ?? '', process.argv.slice(3));
process.exit(code);
