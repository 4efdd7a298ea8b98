#!/usr/bin/env node
// Bundles the CLI into dist/: the runnable entry dist/sm-injector.mjs plus dist/chunks/ (webhook,
// inject) and dist/fetch/ (the init container), with every dependency inside (no node_modules at run
// time). Each subcommand is a dynamic import, so the init container's `fetch` (on the path of every
// pod start) reads and compiles only its own bundle — the AWS SDK, pino, zod/mini — not fastify,
// prom-client, zod's classic API or the 5 MB Kubernetes client. A single-file bundle cost ~150 ms
// more per start, and sharing chunks with the webhook ~35 ms more (see bench/).
import { chmod, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { PINNED_NODE_MAJOR } from "./pinned-node.mjs";

/** esbuild's options shared by both bundles (exported for test/unit/runtime-pin.test.ts). */
export const common = {
  bundle: true,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": ".mjs" },
  platform: "node",
  format: "esm",
  // The image's Node (the pinned major, scripts/versions.env): nothing it runs natively is lowered.
  target: `node${PINNED_NODE_MAJOR}`,
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: "linked",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
  banner: {
    js: [
      // CommonJS dependencies call require() on Node built-ins; give each ESM chunk one.
      'import { createRequire as __smCreateRequire } from "node:module";',
      "const require = __smCreateRequire(import.meta.url);",
    ].join("\n"),
  },
};
// Built only when run (`node scripts/build.mjs`), not when imported. (Not `import.meta.main`: on a Node
// without it the build would silently do nothing.)
if (fileURLToPath(import.meta.url) === path.resolve(process.argv[1] ?? "")) {
  const outdir = "dist";
  await rm(outdir, { recursive: true, force: true });
  // `fetch` (the init container) is its own bundle, dist/fetch/, sharing no chunk with the rest: a
  // chunk shared with the webhook would carry what the webhook needs too (all of zod's classic API,
  // ~500 KiB), to be read and compiled on every pod start.
  const FETCH_BUNDLE = "./fetch/index.mjs";
  const fetchApart = {
    name: "fetch-apart",
    setup(b) {
      b.onResolve({ filter: /\/fetch\/index\.ts$/ }, (args) =>
        args.importer.endsWith("/src/cli/main.ts") ? { path: FETCH_BUNDLE, external: true } : undefined,
      );
    },
  };
  const main = await build({
    ...common,
    entryPoints: { "sm-injector": "src/cli/main.ts" },
    outdir,
    plugins: [fetchApart],
  });
  const fetchBuild = await build({
    ...common,
    entryPoints: { index: "src/fetch/index.ts" },
    outdir: `${outdir}/fetch`,
  });
  const outputs = { ...main.metafile.outputs, ...fetchBuild.metafile.outputs };
  if (!Object.keys(main.metafile.outputs).some((f) => f === `${outdir}/sm-injector.mjs`))
    throw new Error("the entry was not built");
  if (!main.metafile.outputs[`${outdir}/sm-injector.mjs`]?.imports.some((i) => i.path === FETCH_BUNDLE))
    throw new Error(`the entry does not import ${FETCH_BUNDLE}: the fetch-apart plugin did not apply`);
  const entry = `${outdir}/sm-injector.mjs`;
  // The shebang goes on the entry only (esbuild keeps none: main.ts has none, chunks must not).
  const { readFile, writeFile } = await import("node:fs/promises");
  await writeFile(entry, `#!/usr/bin/env node\n${await readFile(entry, "utf8")}`);
  await chmod(entry, 0o755);
  if (process.argv.includes("--analyze")) {
    const { analyzeMetafile } = await import("esbuild");
    console.log(await analyzeMetafile(main.metafile));
    console.log(await analyzeMetafile(fetchBuild.metafile));
  }
  let total = 0;
  for (const f of Object.keys(outputs)) total += (await stat(f)).size;
  let fetchTotal = 0;
  for (const f of Object.keys(fetchBuild.metafile.outputs)) fetchTotal += (await stat(f)).size;
  console.log(
    `built ${entry} (+ ${Object.keys(outputs).length - 1} files, ${(total / 1024).toFixed(0)} KiB in all; fetch: ${(fetchTotal / 1024).toFixed(0)} KiB)`,
  );
}
