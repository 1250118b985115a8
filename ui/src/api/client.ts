// Requests to the aggregator: bearer token from sessionStorage, errors as one
// sentence saying what to do, and a single login prompt when the token is missing
// or wrong.

const TOKEN_KEY = "aperture.token";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly path: string,
    /** the aggregator's own reason (its `detail`), when it gave one */
    readonly reason: string = "",
  ) {
    super(message);
  }
}

type Listener = () => void;

/** Who holds the token, and whether the login prompt should show. */
class Auth {
  private listeners = new Set<Listener>();
  /** bumped when a new token is set: data hooks refetch on change */
  version = 0;
  prompting = false;
  rejected = false;

  get token(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  setToken(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    this.prompting = false;
    this.version++;
    this.emit();
  }

  clear(): void {
    sessionStorage.removeItem(TOKEN_KEY);
    this.version++;
    this.emit();
  }

  /** Many requests may fail at once: the prompt opens once. */
  needToken(): void {
    if (this.prompting) return;
    this.rejected = this.token !== null;
    this.prompting = true;
    this.emit();
  }

  subscribe = (fn: Listener): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  private emit(): void {
    for (const fn of this.listeners) fn();
  }
}

export const auth = new Auth();

export type Params = Record<string, string | number | boolean | undefined>;

export function query(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === "") continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

function headers(token: string | null): HeadersInit {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function detail(res: Response): Promise<string> {
  try {
    const body: unknown = await res.json();
    if (body && typeof body === "object" && "detail" in body) {
      const d = (body as { detail: unknown }).detail;
      if (typeof d === "string") return d;
      // FastAPI validation errors: a list of {loc, msg}
      if (Array.isArray(d)) {
        return d
          .map((e: { loc?: unknown[]; msg?: string }) => `${(e.loc ?? []).slice(1).join(".")}: ${e.msg ?? ""}`)
          .join("; ");
      }
    }
  } catch {
    // not JSON: fall through to the status text
  }
  return res.statusText || `HTTP ${res.status}`;
}

/** `sentWith` is the token the request carried: a 401 answering a token the user has
 * since replaced (a request still in flight when they signed in) says nothing about
 * the new one, and must not reopen the prompt. */
async function explain(res: Response, path: string, sentWith: string | null): Promise<ApiError> {
  const why = await detail(res);
  let msg: string;
  if (res.status === 401) {
    if (sentWith === auth.token) auth.needToken();
    msg = "The aggregator needs a token: enter it in the sign-in dialog.";
  } else if (res.status === 403) {
    msg = `This token may not do that: ${why}`;
  } else if (res.status === 404 && (why === "Not Found" || why === "")) {
    msg = `This aggregator does not serve ${path}: upgrade it to a version with this endpoint.`;
  } else if (res.status === 400 || res.status === 404 || res.status === 422) {
    msg = `The aggregator refused the request: ${why}. Fix the filters and try again.`;
  } else if (res.status >= 500) {
    msg = `The aggregator failed (HTTP ${res.status}: ${why}). Its log says why; try again shortly.`;
  } else {
    msg = `Unexpected answer from the aggregator (HTTP ${res.status}: ${why}).`;
  }
  return new ApiError(msg, res.status, path, why);
}

async function send(path: string, params: Params, signal?: AbortSignal): Promise<Response> {
  let res: Response;
  const sentWith = auth.token;
  try {
    res = await fetch(path + query(params), { headers: headers(sentWith), signal });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(
      "Cannot reach the aggregator: check that aperture-aggregator is running and reload the page.",
      0,
      path,
    );
  }
  if (!res.ok) throw await explain(res, path, sentWith);
  return res;
}

export async function getJson<T>(path: string, params: Params = {}, signal?: AbortSignal): Promise<T> {
  const res = await send(path, params, signal);
  try {
    return (await res.json()) as T;
  } catch {
    throw new ApiError(`The aggregator sent something that is not JSON for ${path}.`, res.status, path);
  }
}

/** Download an export through fetch (a plain link could not carry the token). */
export async function download(path: string, params: Params, fallbackName: string): Promise<string> {
  const res = await send(path, params);
  const blob = await res.blob();
  const disposition = res.headers.get("content-disposition") ?? "";
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = m ? decodeURIComponent(m[1]) : fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}

/** POST/PUT/DELETE a JSON body; the answer's JSON (undefined for 204). */
export async function sendJson<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<T> {
  let res: Response;
  const sentWith = auth.token;
  try {
    res = await fetch(path, {
      method,
      headers: { ...headers(sentWith), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(
      "Cannot reach the aggregator: check that aperture-aggregator is running and reload the page.",
      0,
      path,
    );
  }
  if (!res.ok) throw await explain(res, path, sentWith);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}
