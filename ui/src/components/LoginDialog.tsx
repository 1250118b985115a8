import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { auth } from "../api/client";

/** Asks for the aggregator's token once when a request gets 401; kept in sessionStorage. */
export function LoginDialog() {
  const prompting = useSyncExternalStore(auth.subscribe, () => auth.prompting);
  const [token, setToken] = useState("");
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (prompting) input.current?.focus();
  }, [prompting]);

  if (!prompting) return null;
  return (
    <div className="modal-backdrop">
      <form
        className="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby="login-title"
        data-testid="login"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) auth.setToken(token);
          setToken("");
        }}
      >
        <h2 id="login-title">Sign in to the aggregator</h2>
        <p>
          {auth.rejected
            ? "The aggregator rejected that token. Enter the value of APERTURE_AUTH_TOKEN it was started with."
            : "This aggregator needs a token. Enter the value of APERTURE_AUTH_TOKEN it was started with."}
        </p>
        <label>
          Token
          <input
            ref={input}
            type="password"
            autoComplete="current-password"
            value={token}
            onChange={(e) => setToken(e.target.value)}
            name="token"
          />
        </label>
        <p className="muted small">Kept for this browser tab only (sessionStorage) and sent as a bearer token.</p>
        <div className="modal-actions">
          <button type="submit" className="primary" disabled={!token.trim()}>
            Sign in
          </button>
        </div>
      </form>
    </div>
  );
}
