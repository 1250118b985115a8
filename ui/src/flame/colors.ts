// Frame colours: by module (a stable hue per module within a family per kind),
// or by share change for a diff. Colours are palette indices so the renderer
// can fill every frame of one colour in a single path.

import { packRgba } from "./render";
import { diffDelta, Kind, type FlameTree } from "./tree";

export interface Colors {
  /** CSS colours, for legends */
  palette: string[];
  /** the same colours packed for the raster, then the dim colour last */
  rgba: Uint32Array;
  /** palette index per node */
  index: Uint16Array;
}

type RGB = [number, number, number];

/** HSL (degrees, %, %) to RGB 0..255. */
export function hslToRgb(h: number, s: number, l: number): RGB {
  const S = s / 100;
  const L = l / 100;
  const a = S * Math.min(L, 1 - L);
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (L - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

const css = (c: RGB) => `rgb(${c[0]} ${c[1]} ${c[2]})`;

function pack(colors: RGB[]): Uint32Array {
  const out = new Uint32Array(colors.length + 1);
  colors.forEach((c, k) => (out[k] = packRgba(c[0], c[1], c[2])));
  out[colors.length] = packRgba(DIM_RGB[0], DIM_RGB[1], DIM_RGB[2]);
  return out;
}

const SHADES = 12;

function hash(text: string): number {
  // FNV-1a: the same module gets the same colour in every view and session
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// [hue from, hue to, saturation %, lightness %] per kind
const FAMILIES: Record<number, [number, number, number, number]> = {
  [Kind.root]: [215, 225, 14, 72],
  [Kind.user]: [8, 48, 78, 62],
  [Kind.kernel]: [190, 215, 55, 64],
  [Kind.jit]: [95, 135, 45, 58],
  [Kind.unknown]: [0, 0, 0, 70],
  [Kind.other]: [40, 40, 10, 82],
  // Python functions: violet, apart from native user (red-orange), kernel (blue) and JIT (green)
  [Kind.python]: [262, 292, 52, 68],
};

/** The middle colour of a kind's family, for legends. */
export function kindColor(kind: number): string {
  const [h0, h1, s, l] = FAMILIES[kind] ?? FAMILIES[Kind.unknown];
  return css(hslToRgb(Math.round((h0 + h1) / 2), s, l));
}

/** Which kind families a tree draws, in legend order (frames only: not process or other). */
export function kindsIn(tree: FlameTree): number[] {
  const seen = new Set<number>();
  for (let i = 1; i < tree.n; i++) seen.add(tree.kind[i]);
  return [Kind.user, Kind.python, Kind.kernel, Kind.jit, Kind.unknown].filter((k) => seen.has(k));
}

const DIM_RGB: RGB = [0xe4, 0xe4, 0xe7];
export const DIM = css(DIM_RGB);

/** Colour each frame by its module, in a hue family chosen by its kind. */
export function moduleColors(tree: FlameTree): Colors {
  const rgb: RGB[] = [];
  const slot = new Map<string, number>();
  const index = new Uint16Array(tree.n);
  // palette slot per (module string, kind), -1 until first seen: an array, not a Map,
  // because this runs once per node of a 100k-node tree
  const byModule = new Int32Array(tree.names.length * 8).fill(-1);
  for (let i = 0; i < tree.n; i++) {
    const kind = tree.kind[i];
    const key = tree.module[i] * 8 + (kind & 7);
    let c = byModule[key];
    if (c < 0) {
      const [h0, h1, s, l] = FAMILIES[kind] ?? FAMILIES[Kind.unknown];
      const shade = hash(tree.names[tree.module[i]]) % SHADES;
      const hue = h0 + ((h1 - h0) * shade) / (SHADES - 1);
      const light = l + ((shade % 3) - 1) * 4;
      const color = hslToRgb(Math.round(hue), s, light);
      const id = color.join(",");
      const known = slot.get(id);
      if (known === undefined) {
        c = rgb.length;
        rgb.push(color);
        slot.set(id, c);
      } else {
        c = known;
      }
      byModule[key] = c;
    }
    index[i] = c;
  }
  return { palette: rgb.map(css), rgba: pack(rgb), index };
}

export type DiffScheme = "redgreen" | "colorblind";

const LEVELS = 8;
// grew, shrank: end colours at full intensity (mixed towards NEUTRAL when smaller)
const SCHEMES: Record<DiffScheme, { grew: RGB; shrank: RGB }> = {
  redgreen: { grew: [220, 38, 38], shrank: [22, 163, 74] },
  // blue/orange stays distinct for protanopia, deuteranopia and tritanopia
  colorblind: { grew: [230, 97, 1], shrank: [33, 102, 172] },
};
const NEUTRAL: RGB = [226, 226, 230];
/** share changes smaller than this (0.05 percentage points) are noise */
export const DIFF_NOISE = 0.0005;

function mix(a: RGB, b: RGB, t: number): RGB {
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * t)) as RGB;
}

function diffRgb(scheme: DiffScheme): RGB[] {
  const { grew, shrank } = SCHEMES[scheme];
  const out = [NEUTRAL];
  for (let k = 1; k <= LEVELS; k++) out.push(mix(NEUTRAL, grew, 0.25 + (0.75 * k) / LEVELS));
  for (let k = 1; k <= LEVELS; k++) out.push(mix(NEUTRAL, shrank, 0.25 + (0.75 * k) / LEVELS));
  return out;
}

/** CSS colours of a diff scheme: unchanged, LEVELS shades of grew, LEVELS of shrank. */
export function diffPalette(scheme: DiffScheme): string[] {
  return diffRgb(scheme).map(css);
}

/** 0 = unchanged, 1..LEVELS = grew, LEVELS+1..2*LEVELS = shrank; scaled to the largest change. */
export function diffLevel(delta: number, maxAbs: number): number {
  if (Math.abs(delta) < DIFF_NOISE || maxAbs <= 0) return 0;
  const k = Math.max(1, Math.min(LEVELS, Math.ceil((Math.abs(delta) / maxAbs) * LEVELS)));
  return delta > 0 ? k : LEVELS + k;
}

export function diffColors(tree: FlameTree, scheme: DiffScheme): Colors {
  const index = new Uint16Array(tree.n);
  const rgb = diffRgb(scheme);
  const d = tree.diff;
  if (!d) return { palette: rgb.map(css), rgba: pack(rgb), index };
  let maxAbs = 0;
  for (let i = 1; i < tree.n; i++) maxAbs = Math.max(maxAbs, Math.abs(diffDelta(d, i)));
  for (let i = 0; i < tree.n; i++) index[i] = diffLevel(diffDelta(d, i), maxAbs);
  return { palette: rgb.map(css), rgba: pack(rgb), index };
}

export function isGrew(level: number): boolean {
  return level >= 1 && level <= LEVELS;
}
export function isShrank(level: number): boolean {
  return level > LEVELS;
}
