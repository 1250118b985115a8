// A flame graph with its breadcrumb and search highlighting, focus kept in the URL.

import { useMemo } from "react";
import { kindColor, kindsIn, moduleColors, type Colors } from "./colors";
import { FlameGraph } from "./FlameGraph";
import { compileQuery, exactFunction, search, type SearchResult } from "./search";
import { FrameTooltip } from "./Tooltip";
import { ancestry, findPath, framePath, KIND_NAMES, type FlameTree } from "./tree";

export interface Highlight {
  result: SearchResult | null;
  /** what is highlighted, for the status line */
  what: string;
}

/** Frames to highlight: the selected function if any, else the search. */
export function useHighlight(tree: FlameTree | null, fn: string, fnModule: string, query: string): Highlight {
  return useMemo(() => {
    if (!tree) return { result: null, what: "" };
    if (fn) return { result: exactFunction(fn, fnModule || null, tree), what: fn };
    const test = compileQuery(query);
    if (test) return { result: search(tree, test), what: query };
    return { result: null, what: "" };
  }, [tree, fn, fnModule, query]);
}

export function Breadcrumb({ tree, focus, onFocus }: { tree: FlameTree; focus: number; onFocus: (path: string[]) => void }) {
  const chain = ancestry(tree, focus);
  return (
    <nav className="breadcrumb" aria-label="Zoom path" data-testid="breadcrumb">
      {chain.map((j, k) => (
        <span key={j}>
          {k > 0 && <span className="sep">›</span>}
          {k === chain.length - 1 ? (
            <span className="crumb current" aria-current="location">
              {tree.names[tree.name[j]]}
            </span>
          ) : (
            <button type="button" className="crumb" onClick={() => onFocus(framePath(tree, j))}>
              {tree.names[tree.name[j]]}
            </button>
          )}
        </span>
      ))}
      {chain.length > 1 && (
        <button type="button" className="link-button small reset-zoom" onClick={() => onFocus([])}>
          reset zoom
        </button>
      )}
    </nav>
  );
}

/** What the frame colours mean (module colours only; a diff has its own legend). */
function KindLegend({ tree }: { tree: FlameTree }) {
  const kinds = useMemo(() => kindsIn(tree), [tree]);
  if (kinds.length < 2) return null;
  return (
    <span className="legend small" data-testid="kind-legend">
      {kinds.map((k) => (
        <span key={k} className={`legend-kind kind-${KIND_NAMES[k]}`}>
          <span className="swatch" style={{ background: kindColor(k) }} /> {KIND_NAMES[k]}
        </span>
      ))}
    </span>
  );
}

interface PanelProps {
  tree: FlameTree;
  focusPath: string[];
  onFocusPath: (path: string[]) => void;
  highlight: Highlight;
  label: string;
  colors?: Colors;
  onHover?: (node: number) => void;
  grandTotal?: number;
}

export function FlamePanel({ tree, focusPath, onFocusPath, highlight, label, colors, onHover, grandTotal }: PanelProps) {
  const found = useMemo(() => findPath(tree, focusPath), [tree, focusPath]);
  const focus = found < 0 ? 0 : found;
  const palette = useMemo(() => colors ?? moduleColors(tree), [colors, tree]);
  return (
    <div className="flame-panel">
      <Breadcrumb tree={tree} focus={focus} onFocus={onFocusPath} />
      {found < 0 && focusPath.length > 0 && (
        <div className="notice small">
          The zoomed frame ({focusPath[focusPath.length - 1]}) is not in this range: showing everything.
        </div>
      )}
      {!colors && <KindLegend tree={tree} />}
      <FlameGraph
        tree={tree}
        colors={palette}
        focus={focus}
        highlight={highlight.result?.match ?? null}
        label={label}
        onFocus={(i) => onFocusPath(framePath(tree, i))}
        onHover={onHover}
        tooltip={(i) => <FrameTooltip tree={tree} node={i} grandTotal={grandTotal ?? tree.total[0]} />}
      />
    </div>
  );
}
