// Per-disk progress bookkeeping shared by the displays: latest counters plus a rate meter.

import type { MigrationEvent } from '../supervisor/index.js';
import { RateMeter } from './rate.js';

type DiskEvent = Extract<MigrationEvent, { type: 'disk' }>;

export interface DiskView {
  readonly key: string;
  event: DiskEvent;
  readonly meter: RateMeter;
}

export class DiskBoard {
  readonly disks = new Map<string, DiskView>();

  update(e: DiskEvent): DiskView {
    const key = `${e.vm}\u0000${e.disk}`;
    let view = this.disks.get(key);
    if (!view) {
      view = { key, event: e, meter: new RateMeter() };
      this.disks.set(key, view);
    }
    view.event = e;
    view.meter.add(e.bytesDone);
    return view;
  }
}
