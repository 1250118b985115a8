import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vitest/config";

// The aggregator serves the built dashboard at / (src/aperture/aggregator/web.py);
// `npm run dev` proxies the API to a local aggregator on its default admin port.
const aggregator = "http://127.0.0.1:9090";
const outDir = fileURLToPath(new URL("../src/aperture/aggregator/web", import.meta.url));

// web/README.md is committed, so the directory is not emptied; old hashed
// assets are removed here instead of piling up.
function cleanAssets(): Plugin {
  return {
    name: "aperture-clean-assets",
    apply: "build",
    buildStart() {
      rmSync(`${outDir}/assets`, { recursive: true, force: true });
    },
  };
}

export default defineConfig({
  plugins: [react(), cleanAssets()],
  build: {
    outDir,
    emptyOutDir: false,
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api": aggregator,
      "/healthz": aggregator,
      "/readyz": aggregator,
      "/metrics": aggregator,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
