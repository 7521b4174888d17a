// extents: byte-range arithmetic shared by the clients (CBT answers) and the stages (copy plans,
// resume journals). An extent is the half-open range [start, start + length).

export interface Extent {
  readonly start: number;
  readonly length: number;
}

/** Sorts, drops empty ranges, clips to [0, capacity) and merges overlapping or touching extents. */
export function normalizeExtents(extents: readonly Extent[], capacity: number): Extent[] {
  const sorted = extents
    .map((e) => ({ start: Math.max(0, e.start), end: Math.min(capacity, e.start + e.length) }))
    .filter((e) => e.end > e.start)
    .sort((a, b) => a.start - b.start);
  const out: Extent[] = [];
  let cur: { start: number; end: number } | undefined;
  for (const e of sorted) {
    if (cur && e.start <= cur.end) {
      cur.end = Math.max(cur.end, e.end);
    } else {
      if (cur) out.push({ start: cur.start, length: cur.end - cur.start });
      cur = { ...e };
    }
  }
  if (cur) out.push({ start: cur.start, length: cur.end - cur.start });
  return out;
}

/**
 * Joins extents separated by gaps of at most `maxGap` bytes: one range request that also carries a
 * small gap is cheaper than two requests (CBT often reports neighbouring 64 KiB blocks apart).
 */
export function coalesceExtents(extents: readonly Extent[], maxGap: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out[out.length - 1];
    if (last && e.start - (last.start + last.length) <= maxGap) {
      out[out.length - 1] = { start: last.start, length: e.start + e.length - last.start };
    } else {
      out.push(e);
    }
  }
  return out;
}

/** Cuts extents into pieces of at most `size` bytes, aligned to multiples of `size` where possible. */
export function splitExtents(extents: readonly Extent[], size: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    let pos = e.start;
    const end = e.start + e.length;
    while (pos < end) {
      const next = Math.min(end, (Math.floor(pos / size) + 1) * size);
      out.push({ start: pos, length: next - pos });
      pos = next;
    }
  }
  return out;
}

/** Removes the `done` ranges from `extents` (both normalized). Used to resume a copy. */
export function subtractExtents(extents: readonly Extent[], done: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const e of extents) {
    let pos = e.start;
    const end = e.start + e.length;
    while (j < done.length && done[j]!.start + done[j]!.length <= pos) j++;
    let k = j;
    while (pos < end && k < done.length && done[k]!.start < end) {
      const d = done[k]!;
      if (d.start > pos) out.push({ start: pos, length: d.start - pos });
      pos = Math.max(pos, d.start + d.length);
      k++;
    }
    if (pos < end) out.push({ start: pos, length: end - pos });
  }
  return out;
}

export function totalLength(extents: readonly Extent[]): number {
  return extents.reduce((sum, e) => sum + e.length, 0);
}
