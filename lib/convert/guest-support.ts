// Whether the conversion here can handle a guest, judged before its disks are copied from what
// vSphere says of it: the guest id VMware Tools report from inside the guest, else the one its
// configuration declares. virt-v2v converts Linux and Windows guests only, and Windows needs
// virtio-win and rhsrvany, which Debian does not ship (reference: toolchain.md).

import { OneswapError, type Refusal } from '../errors/index.js';

export interface GuestSupport {
  /** A conversion that cannot succeed. */
  readonly refusal?: Refusal;
  /** A conversion that may find nothing to convert. */
  readonly doubt?: Refusal;
}

/** Guest families virt-v2v has no conversion for, by vSphere guest id prefix. */
const NOT_CONVERTED = /^(freebsd|solaris|darwin|netware|os2|dos|unixware|openServer|sco|eComStation|vmkernel|win31|win95|win98|winMe)/i;
const UNKNOWN = /^(otherGuest(64)?|other)?$/i;

export function guestSupport(vm: { readonly name: string; readonly guestId: string; readonly toolsGuestId: string; readonly guestFullName: string }): GuestSupport {
  const id = vm.toolsGuestId || vm.guestId;
  const what = `VM ${vm.name}'s guest is ${vm.guestFullName || id || 'not declared'}${id ? ` (${id}${vm.toolsGuestId ? ', as VMware Tools report it' : ''})` : ''}`;
  if (/^win/i.test(id))
    return {
      refusal: {
        code: 'guest-os-unsupported',
        error: new OneswapError('conversion', `${what}: this host cannot convert Windows, Debian ships neither virtio-win nor rhsrvany`, {
          hint: 'migrate it without conversion (convert: false) and install the virtio drivers in the guest, or convert it where virtio-win is installed',
        }),
      },
    };
  if (NOT_CONVERTED.test(id))
    return {
      refusal: {
        code: 'guest-os-unsupported',
        error: new OneswapError('conversion', `${what}: virt-v2v converts only Linux and Windows guests`, {
          hint: 'migrate it without conversion (convert: false); it must boot on KVM as it is',
        }),
      },
    };
  if (UNKNOWN.test(id))
    return {
      doubt: {
        code: 'guest-os-unknown',
        error: new OneswapError('conversion', `${what}: vSphere does not say which OS it runs, the conversion may find none`, {
          hint: 'set the guest OS in vCenter or let VMware Tools report it; a guest without an OS is imported unconverted',
        }),
      },
    };
  return {};
}
