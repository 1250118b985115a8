import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { auth, getJson } from "./client";

// sessionStorage as a browser tab has it (vitest runs in node).
class TabStorage {
  private items = new Map<string, string>();
  getItem(k: string): string | null {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.items.set(k, v);
  }
  removeItem(k: string): void {
    this.items.delete(k);
  }
}

/** A 401 whose body arrives only when `release` is called: the request was in flight. */
function slowRejection(): { response: Response; release: () => void } {
  let release = (): void => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      release = () => {
        controller.enqueue(new TextEncoder().encode(JSON.stringify({ detail: "bad token" })));
        controller.close();
      };
    },
  });
  return { response: new Response(body, { status: 401, headers: { "content-type": "application/json" } }), release };
}

describe("the sign-in prompt", () => {
  beforeEach(() => {
    vi.stubGlobal("sessionStorage", new TabStorage());
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    auth.prompting = false;
    auth.rejected = false;
  });

  it("opens when the token in use is rejected", async () => {
    sessionStorage.setItem("aperture.token", "wrong");
    vi.stubGlobal("fetch", async () => new Response(JSON.stringify({ detail: "bad token" }), { status: 401 }));
    await expect(getJson("/api/v1/agents")).rejects.toThrow("sign-in dialog");
    expect(auth.prompting).toBe(true);
    expect(auth.rejected).toBe(true);
  });

  it("stays closed when a rejection answers a token already replaced", async () => {
    sessionStorage.setItem("aperture.token", "still-wrong");
    const late = slowRejection();
    vi.stubGlobal("fetch", async (_path: string, init: RequestInit) => {
      expect((init.headers as Record<string, string>).Authorization).toBe("Bearer still-wrong");
      return late.response;
    });
    const inFlight = getJson("/api/v1/agents");
    await new Promise((r) => setTimeout(r, 0)); // the 401's headers are in, its body is not
    auth.setToken("right");
    late.release();
    await expect(inFlight).rejects.toThrow("sign-in dialog");
    expect(auth.prompting).toBe(false);
  });
});
