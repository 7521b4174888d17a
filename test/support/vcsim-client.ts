// The product's vSphere client logged in to a test simulator, verifying its certificate.

import { VSphereClient, type ConnectOptions } from '../../lib/vsphere/index.js';
import type { Vcsim } from '../peers/vcsim/index.js';

export function connectTo(sim: Vcsim, extra: Partial<ConnectOptions> = {}): Promise<VSphereClient> {
  return VSphereClient.connect({
    host: sim.host,
    port: sim.port,
    credentials: { user: sim.username, password: sim.password },
    tls: { kind: 'verify', ca: sim.certPem },
    keepAliveMs: 0,
    ...extra,
  });
}
