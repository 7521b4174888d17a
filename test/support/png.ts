// A PNG decoded to RGBA pixels, enough for the screenshots Chromium writes (8-bit RGB or RGBA,
// not interlaced): so a test can say which colours a rendered page shows, not only that a file
// was written.

import { inflateSync } from 'node:zlib';

export interface Png {
  readonly width: number;
  readonly height: number;
  /** width × height × 4 bytes, row after row. */
  readonly rgba: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function decodePng(file: Buffer): Png {
  if (!file.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG file');
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  for (let at = 8; at < file.length; ) {
    const len = file.readUInt32BE(at);
    const type = file.toString('latin1', at + 4, at + 8);
    const data = file.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      if (depth !== 8 || (colour !== 2 && colour !== 6) || interlace !== 0) throw new Error(`PNG kind not handled: depth ${depth}, colour type ${colour}, interlace ${interlace}`);
      channels = colour === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error(`PNG data is ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const rows = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) unfilter(raw, y * (stride + 1), rows, y * stride, stride, channels, y > 0);
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, o = 0; i < rows.length; i += channels, o += 4) {
    rgba[o] = rows[i]!;
    rgba[o + 1] = rows[i + 1]!;
    rgba[o + 2] = rows[i + 2]!;
    rgba[o + 3] = channels === 4 ? rows[i + 3]! : 255;
  }
  return { width, height, rgba };
}

/** Undoes one scanline's filter (PNG spec, section 9) in place into `out`. */
function unfilter(raw: Buffer, at: number, out: Buffer, o: number, stride: number, bpp: number, hasPrior: boolean): void {
  const filter = raw[at]!;
  for (let i = 0; i < stride; i++) {
    const x = raw[at + 1 + i]!;
    const a = i >= bpp ? out[o + i - bpp]! : 0;
    const b = hasPrior ? out[o - stride + i]! : 0;
    const c = hasPrior && i >= bpp ? out[o - stride + i - bpp]! : 0;
    let v: number;
    switch (filter) {
      case 0: v = x; break;
      case 1: v = x + a; break;
      case 2: v = x + b; break;
      case 3: v = x + ((a + b) >> 1); break;
      case 4: {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
        break;
      }
      default: throw new Error(`PNG filter type ${filter} unknown`);
    }
    out[o + i] = v & 0xff;
  }
}

/** How many pixels have exactly this colour ('#rrggbb'). */
export function countColour(png: Png, hex: string): number {
  const r = parseInt(hex.slice(1, 3), 16);
  const g = parseInt(hex.slice(3, 5), 16);
  const b = parseInt(hex.slice(5, 7), 16);
  let n = 0;
  for (let i = 0; i < png.rgba.length; i += 4) if (png.rgba[i] === r && png.rgba[i + 1] === g && png.rgba[i + 2] === b) n++;
  return n;
}
