#!/usr/bin/env node
// Bundles the CLI into one runnable file, dist/sm-injector.mjs (what the image ships).
// Subcommands are dynamic imports, so esbuild wraps them in lazy initialisers: `fetch` never
// evaluates fastify, prom-client or the Kubernetes client.
import { chmod, mkdir, stat } from "node:fs/promises";
import { build } from "esbuild";

const outfile = "dist/sm-injector.mjs";
await mkdir("dist", { recursive: true });
const result = await build({
  entryPoints: ["src/cli/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "linked",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  banner: {
    js: [
      "#!/usr/bin/env node",
      // CommonJS dependencies call require() on Node built-ins; give the ESM bundle one.
      'import { createRequire as __smCreateRequire } from "node:module";',
      "const require = __smCreateRequire(import.meta.url);",
    ].join("\n"),
  },
});
await chmod(outfile, 0o755);
const { size } = await stat(outfile);
if (process.argv.includes("--analyze")) {
  const { analyzeMetafile } = await import("esbuild");
  console.log(await analyzeMetafile(result.metafile));
}
console.log(`built ${outfile} (${(size / 1024).toFixed(0)} KiB)`);
