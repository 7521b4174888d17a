// nbd: our own NBD client (no libnbd binding exists for Node) over a Unix socket, for the block
// servers oneswap starts itself: nbdkit, which serves a VMware disk to lib/input's vddk and nfc
// readers, and qemu-nbd, which serves a qcow2 or RBD image lib/output writes. Fixed newstyle
// handshake, structured replies, base:allocation block status; READ, BLOCK_STATUS, WRITE (several
// in flight per connection, sent without a copy), WRITE_ZEROES (with or without holes), TRIM,
// FLUSH; the export's flags and block sizes as negotiated; server errors as errno names.

export { NbdClient, type NbdExtent, type NbdConnectOptions, type NbdZeroOptions } from './client.js';
export { NbdError } from './protocol.js';
