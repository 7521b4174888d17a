// A command run without some directories: in a mount namespace of its own with an empty tmpfs
// (mode 0) over each, so what it needs from them must come another way (a BRIDGE_LIST
// datastore's files, which live on the bridge host, not on the frontend). Needs root, as the
// tests that use it run for the bridge peer anyway. Exit 125: a directory could not be hidden.

export function withHiddenDirs(hide: readonly string[], command: readonly string[]): string[] {
  if (hide.length === 0) return [...command];
  return [
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    'n=$1; shift; while [ "$n" -gt 0 ]; do mount -t tmpfs -o size=1m,mode=0 oneswap-hidden "$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"',
    'sh',
    String(hide.length),
    ...hide,
    ...command,
  ];
}
