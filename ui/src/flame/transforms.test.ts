import { describe, expect, it } from "vitest";
import { invert } from "./invert";
import { sandwich } from "./sandwich";
import { compileQuery, exactFunction, search } from "./search";
import { folded, unfold, wide } from "./testing";
import { children, type FlameTree } from "./tree";

function label(t: FlameTree, i: number): string {
  return t.names[t.name[i]];
}

function kidsByName(t: FlameTree, i: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of children(t, i)) out[label(t, c)] = t.total[c];
  return out;
}

describe("invert", () => {
  const t = folded({ "p;main;work;hot": 6, "p;main;hot": 3, "p;main;idle": 1, "q;run;hot": 2 });

  it("puts leaf functions at the top with their callers below", () => {
    const inv = invert(t);
    expect(inv.total[0]).toBe(12);
    expect(kidsByName(inv, 0)).toEqual({ hot: 11, idle: 1 });
    const hot = children(inv, 0)[0];
    expect(label(inv, hot)).toBe("hot"); // heaviest first
    expect(kidsByName(inv, hot)).toEqual({ work: 6, main: 3, run: 2 });
  });

  it("keeps every sample: inverted twice gives the original stacks", () => {
    const back = invert(invert(t));
    expect(unfold(back)).toEqual(unfold(t));
  });

  it("is consistent on a large tree", () => {
    const big = wide(20_000, 6);
    const inv = invert(big);
    expect(inv.total[0]).toBe(big.total[0]);
    let wrong = 0;
    for (let i = 0; i < inv.n; i++) {
      let sum = inv.self[i];
      for (const c of children(inv, i)) sum += inv.total[c];
      if (sum !== inv.total[i]) wrong++;
    }
    expect(wrong).toBe(0);
  });
});

describe("sandwich", () => {
  const t = folded({
    "p;main;parse;lex": 4,
    "p;main;parse": 1,
    "p;main;load;parse;lex": 2,
    "p;main;load;parse;parse;eval": 3, // recursion counts once
    "p;main;other": 10,
  });

  it("merges callees over every call site", () => {
    const s = sandwich(t, "parse")!;
    expect(s.sites.length).toBe(2);
    expect(s.callees.total[0]).toBe(10);
    expect(s.callees.self[0]).toBe(1);
    expect(kidsByName(s.callees, 0)).toEqual({ lex: 6, parse: 3 });
  });

  it("lists callers from the nearest outward", () => {
    const s = sandwich(t, "parse")!;
    expect(s.callers.total[0]).toBe(10);
    expect(kidsByName(s.callers, 0)).toEqual({ main: 5, load: 5 });
    const load = children(s.callers, 0).find((c) => label(s.callers, c) === "load")!;
    expect(kidsByName(s.callers, load)).toEqual({ main: 5 });
  });

  it("is null for a function that is not there", () => {
    expect(sandwich(t, "nope")).toBeNull();
  });
});

describe("search", () => {
  const t = folded({ "p;main;parse;parse": 4, "p;main;lex": 6, "p;parser_init": 2 });

  it("highlights matches and counts recursive ones once", () => {
    const r = search(t, compileQuery("parse")!);
    expect(r.nodes).toBe(3);
    expect(r.total).toBe(6); // 4 under parse (once) + 2 in parser_init
    expect(r.total / t.total[0]).toBeCloseTo(0.5);
  });

  it("is case-insensitive and takes /regular expressions/", () => {
    expect(search(t, compileQuery("LEX")!).total).toBe(6);
    expect(search(t, compileQuery("/^parse$/")!).total).toBe(4);
    expect(compileQuery("/[/")).toBeNull();
    expect(compileQuery("  ")).toBeNull();
  });

  it("matches one function exactly for the table's selection", () => {
    const r = exactFunction("parse", "app", t);
    expect(r.total).toBe(4);
    expect(exactFunction("parse", "libc.so.6", t).nodes).toBe(0);
  });
});
