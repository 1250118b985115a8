// Frame colours: by module (a stable hue per module within a family per kind),
// or by share change for a diff. Colours are palette indices so the renderer
// can fill every frame of one colour in a single path.

import { diffDelta, Kind, type FlameTree } from "./tree";

export interface Colors {
  palette: string[];
  /** palette index per node */
  index: Uint16Array;
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
};

export const DIM = "#e4e4e7";
export const HIGHLIGHT = "#c026d3";

/** Colour each frame by its module, in a hue family chosen by its kind. */
export function moduleColors(tree: FlameTree): Colors {
  const palette: string[] = [];
  const slot = new Map<string, number>();
  const index = new Uint16Array(tree.n);
  const byModule = new Map<number, number>(); // (kind, module) -> palette index
  for (let i = 0; i < tree.n; i++) {
    const kind = tree.kind[i];
    const key = tree.module[i] * 8 + kind;
    let c = byModule.get(key);
    if (c === undefined) {
      const [h0, h1, s, l] = FAMILIES[kind] ?? FAMILIES[Kind.unknown];
      const shade = hash(tree.names[tree.module[i]]) % SHADES;
      const hue = h0 + ((h1 - h0) * shade) / (SHADES - 1);
      const light = l + ((shade % 3) - 1) * 4;
      const css = `hsl(${hue.toFixed(0)} ${s}% ${light}%)`;
      c = slot.get(css);
      if (c === undefined) {
        c = palette.length;
        palette.push(css);
        slot.set(css, c);
      }
      byModule.set(key, c);
    }
    index[i] = c;
  }
  return { palette, index };
}

export type DiffScheme = "redgreen" | "colorblind";

const LEVELS = 8;
// grew, shrank: end colours at full intensity (mixed towards NEUTRAL when smaller)
const SCHEMES: Record<DiffScheme, { grew: [number, number, number]; shrank: [number, number, number] }> = {
  redgreen: { grew: [220, 38, 38], shrank: [22, 163, 74] },
  // blue/orange stays distinct for protanopia, deuteranopia and tritanopia
  colorblind: { grew: [230, 97, 1], shrank: [33, 102, 172] },
};
const NEUTRAL: [number, number, number] = [226, 226, 230];
/** share changes smaller than this (0.05 percentage points) are noise */
export const DIFF_NOISE = 0.0005;

function mix(a: [number, number, number], b: [number, number, number], t: number): string {
  const c = a.map((v, k) => Math.round(v + (b[k] - v) * t));
  return `rgb(${c[0]} ${c[1]} ${c[2]})`;
}

export function diffPalette(scheme: DiffScheme): string[] {
  const { grew, shrank } = SCHEMES[scheme];
  const palette = [mix(NEUTRAL, NEUTRAL, 0)];
  for (let k = 1; k <= LEVELS; k++) palette.push(mix(NEUTRAL, grew, 0.25 + (0.75 * k) / LEVELS));
  for (let k = 1; k <= LEVELS; k++) palette.push(mix(NEUTRAL, shrank, 0.25 + (0.75 * k) / LEVELS));
  return palette;
}

/** 0 = unchanged, 1..LEVELS = grew, LEVELS+1..2*LEVELS = shrank; scaled to the largest change. */
export function diffLevel(delta: number, maxAbs: number): number {
  if (Math.abs(delta) < DIFF_NOISE || maxAbs <= 0) return 0;
  const k = Math.max(1, Math.min(LEVELS, Math.ceil((Math.abs(delta) / maxAbs) * LEVELS)));
  return delta > 0 ? k : LEVELS + k;
}

export function diffColors(tree: FlameTree, scheme: DiffScheme): Colors {
  const index = new Uint16Array(tree.n);
  const d = tree.diff;
  if (!d) return { palette: diffPalette(scheme), index };
  let maxAbs = 0;
  for (let i = 1; i < tree.n; i++) maxAbs = Math.max(maxAbs, Math.abs(diffDelta(d, i)));
  for (let i = 0; i < tree.n; i++) index[i] = diffLevel(diffDelta(d, i), maxAbs);
  return { palette: diffPalette(scheme), index };
}

export function isGrew(level: number): boolean {
  return level >= 1 && level <= LEVELS;
}
export function isShrank(level: number): boolean {
  return level > LEVELS;
}
