#!/usr/bin/env node
// Bundles the CLI into dist/: the runnable entry dist/sm-injector.mjs plus dist/chunks/ (webhook,
// inject) and dist/fetch/ (the init container), with every dependency inside (no node_modules at run
// time). Each subcommand is a dynamic import, so the init container's `fetch` (on the path of every
// pod start) reads and compiles only its own bundle — the AWS SDK, pino, zod/mini — not fastify,
// prom-client, zod's classic API or the 5 MB Kubernetes client. A single-file bundle cost ~150 ms
// more per start, and sharing chunks with the webhook ~35 ms more (see bench/).
//
// With --snapshot it also writes dist/fetch.snapshot.blob: a Node start-up snapshot of `fetch` (see
// src/cli/fetch-snapshot.ts), tied to the node binary that runs this script (its version, arch and
// V8 build): build it with the very node the image ships. shippedEntrypoint() says how to start
// what was built; the image's ENTRYPOINT and the tests use it.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
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
  // Node's own `punycode` is deprecated (DEP0040, a warning on stderr of every command that loads the
  // Kubernetes client, through whatwg-url and tr46); the userland package with the same API replaces it.
  alias: { punycode: "punycode/" },
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
/** The snapshot's file name, next to the entry (dist/, /app in the image). */
export const SNAPSHOT_BLOB = "fetch.snapshot.blob";
const ENTRY = "sm-injector.mjs";

// Node's snapshot builder cannot serialize the HTTP parser or the HTTP/2 session bindings, which
// these modules create when loaded; and `os` reads the build machine's uname (kernel release, arch)
// when it loads and keeps it, so a snapshot holding it would report the build host's kernel (in
// the SDK's User-Agent) on every node (fs/promises loads `os` inside Node). In the snapshot bundle
// each becomes an object whose members load the real module on first use (at run time). Constants
// (http2.constants, os.EOL, read when the SDK's modules load) are copied in as they are.
const LAZY_BUILTIN = /^(node:)?(http|https|http2|os|fs\/promises)$/;
// Loaded while the snapshot is built, these would put host state into it: the build fails instead.
const BUILD_TIME_FORBIDDEN = new Set(["os", "fs/promises"]);
const requireBuiltin = createRequire(import.meta.url);
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(b) {
    b.onResolve({ filter: LAZY_BUILTIN }, (args) =>
      args.namespace === "lazy-builtin"
        ? { path: args.path, external: true }
        : { path: args.path.replace(/^node:/, ""), namespace: "lazy-builtin" },
    );
    b.onLoad({ filter: /.*/, namespace: "lazy-builtin" }, (args) => {
      const real = requireBuiltin(`node:${args.path}`);
      const isPrimitive = (v) => v === null || (typeof v !== "object" && typeof v !== "function");
      const isConstants = (v) =>
        isPrimitive(v) || (typeof v === "object" && Object.values(v).every(isPrimitive));
      const members = Object.keys(real).map((k) =>
        isConstants(real[k])
          ? `exports[${JSON.stringify(k)}] = ${JSON.stringify(real[k])};`
          : `Object.defineProperty(exports, ${JSON.stringify(k)}, { enumerable: true, get: () => load()[${JSON.stringify(k)}] });`,
      );
      const guard = BUILD_TIME_FORBIDDEN.has(args.path)
        ? `if (require("node:v8").startupSnapshot.isBuildingSnapshot()) throw new Error("node:${args.path} used while building the snapshot: the blob would hold the build machine's values");`
        : "";
      return {
        loader: "js",
        contents: [
          `let m;`,
          `const load = () => { ${guard} return (m ??= require("node:${args.path}")); };`,
          ...members,
        ].join("\n"),
      };
    });
  },
};

// `import http from "node:http"` in an ES module makes Node build the module's ES facade, which reads
// every export once: one of http's lazy exports loads Node's bundled undici (800 KiB of JavaScript,
// ~11 MiB of RSS in a process that never uses it). In the ESM bundles http and https (ours and our
// dependencies' imports alike) are the CommonJS modules instead, whose members are read on use.
const CJS_BUILTIN = /^(node:)?(http|https)$/;
export const commonJsBuiltins = {
  name: "commonjs-builtins",
  setup(b) {
    b.onResolve({ filter: CJS_BUILTIN }, (args) =>
      args.namespace === "cjs-builtin"
        ? { path: `node:${args.path.replace(/^node:/, "")}`, external: true }
        : { path: args.path.replace(/^node:/, ""), namespace: "cjs-builtin" },
    );
    b.onLoad({ filter: /.*/, namespace: "cjs-builtin" }, (args) => ({
      loader: "js",
      contents: `module.exports = require("node:${args.path}");`,
    }));
  },
};

/** Fails when an ES module of the bundle still imports http or https (see commonJsBuiltins). */
function assertNoEsmHttpImports(metafile) {
  for (const [file, out] of Object.entries(metafile.outputs))
    for (const i of out.imports)
      if (i.external && i.kind === "import-statement" && CJS_BUILTIN.test(i.path))
        throw new Error(
          `${file} imports ${i.path} as an ES module: the commonjs-builtins plugin did not apply`,
        );
}

const SNAPSHOT_WORK_DIR = "/tmp/sm-injector-snapshot-build";
// The builder's whole environment: none of this machine's (no AWS_*, no HOME), and AWS config files
// that do not exist, should anything in the warm-up look for them.
const SNAPSHOT_BUILDER_ENV = {
  HOME: "/nonexistent",
  AWS_CONFIG_FILE: "/nonexistent/config",
  AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials",
};

// What a module reads from the clock or the host when it loads would be the build machine's in a
// snapshot. pino does (the time for its isoTimeNano option, its default base bindings' pid and
// hostname; we use neither: fetch sets its own base): the snapshot bundle reads them on first use,
// and the default base only for a logger made without one (pino's option merge would otherwise
// read it for every logger, and the warm-up makes one at build time).
// A rewrite that no longer applies fails the build rather than ship the build's values.
const SNAPSHOT_REWRITES = [
  {
    file: /[\\/]pino[\\/]lib[\\/]time\.js$/,
    replace: [
      [
        "const startWallTimeNs = BigInt(Date.now()) * NS_PER_MS\nconst startHrTime = process.hrtime.bigint()\n",
        "let startWallTimeNs\nlet startHrTime\n",
      ],
      [
        "const elapsedNs = process.hrtime.bigint() - startHrTime",
        "startWallTimeNs ??= BigInt(Date.now()) * NS_PER_MS\n  startHrTime ??= process.hrtime.bigint()\n  const elapsedNs = process.hrtime.bigint() - startHrTime",
      ],
    ],
  },
  {
    file: /[\\/]pino[\\/]pino\.js$/,
    replace: [
      ["const { pid } = process\nconst hostname = os.hostname()\n", ""],
      ["  base: { pid, hostname },\n", ""],
    ],
  },
  {
    file: /[\\/]pino[\\/]lib[\\/]tools\.js$/,
    replace: [
      [
        "    opts = Object.assign({}, defaultOptions, opts)\n",
        "    opts = Object.assign({}, defaultOptions, opts)\n    if (!('base' in opts)) opts.base = { pid: process.pid, hostname: require('node:os').hostname() }\n",
      ],
    ],
  },
];
const readsOnFirstUse = {
  name: "reads-on-first-use",
  setup(b) {
    for (const { file, replace } of SNAPSHOT_REWRITES)
      b.onLoad({ filter: file }, async (args) => {
        let source = await readFile(args.path, "utf8");
        for (const [from, to] of replace) {
          if (!source.includes(from))
            throw new Error(
              `${args.path} changed: the snapshot build's rewrite of ${JSON.stringify(from)} no longer applies`,
            );
          source = source.replace(from, to);
        }
        return { loader: "js", contents: source };
      });
  },
};

/** What Node prints while building any snapshot that loads these modules; nothing to act on. */
const KNOWN_BUILDER_WARNING =
  /^\(node:\d+\) Warning: It's not yet fully verified whether built-in module "(node:module|worker_threads)" works in user snapshot builder scripts\.$|^It may still work in some cases|^To request support for the module|^\(Use `node --trace-warnings/;

/**
 * Creates `dir`, waiting while another build (on a shared machine, another checkout's) holds it;
 * one left over by an interrupted build (older than two minutes) is removed.
 */
async function claimWorkDir(dir) {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      await mkdir(dir);
      return;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
    }
    const age = Date.now() - (await stat(dir).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age > 120_000) await rm(dir, { recursive: true, force: true });
    else if (Date.now() > deadline)
      throw new Error(
        `${dir} is still held by another snapshot build after 3 minutes; remove it if none runs`,
      );
    else await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Fails when the blob holds this machine's kernel release or host name (a module that read them
 * while the snapshot was built; the builder runs on this machine). Values too short to tell apart
 * from other bytes are not looked for.
 */
function assertNoHostValues(blob) {
  for (const [what, value] of [
    ["kernel release", os.release()],
    ["host name", os.hostname()],
  ])
    if (value.length >= 6 && blob.includes(value))
      throw new Error(
        `the snapshot holds this machine's ${what} (${value}): a module read it while the snapshot was built; defer that module (LAZY_BUILTIN) or its read`,
      );
}

/**
 * Builds `outdir`/fetch.snapshot.blob with `node`, from its own CommonJS bundle (in a temporary
 * directory: the image needs the blob only). The builder runs with an empty environment (no AWS_*,
 * no HOME) in an empty directory, so nothing of this machine can be read into the blob.
 */
export async function buildFetchSnapshot(outdir, node = process.execPath) {
  // One fixed directory: the builder keeps the script's path in the heap it saves.
  const work = SNAPSHOT_WORK_DIR;
  await claimWorkDir(work);
  try {
    const script = path.join(work, "fetch-snapshot.cjs");
    await build({
      ...common,
      splitting: false,
      format: "cjs",
      banner: {},
      metafile: false,
      entryPoints: [fileURLToPath(new URL("../src/cli/fetch-snapshot.ts", import.meta.url))],
      outfile: script,
      outdir: undefined,
      legalComments: "none",
      plugins: [lazyBuiltins, readsOnFirstUse],
    });
    // Relative names, a fixed seed: the builder's own argv is part of the heap it saves, and V8's
    // random generator seeds its hash tables. (Math.random and crypto are seeded afresh at run
    // time, and V8 rehashes the heap with a fresh hash seed when it deserializes it.)
    const r = spawnSync(
      node,
      ["--random-seed=1", "--snapshot-blob", SNAPSHOT_BLOB, "--build-snapshot", path.basename(script)],
      { cwd: work, env: SNAPSHOT_BUILDER_ENV, encoding: "utf8" },
    );
    const unexpected = r.stderr.split("\n").filter((l) => l.trim() !== "" && !KNOWN_BUILDER_WARNING.test(l));
    if (r.status !== 0 || unexpected.length > 0)
      throw new Error(
        `the snapshot builder failed (exit ${r.status}):\n${unexpected
          .map((l) => l.slice(0, 300))
          .slice(-20)
          .join("\n")}`,
      );
    assertNoHostValues(await readFile(path.join(work, SNAPSHOT_BLOB)));
    const blob = path.resolve(outdir, SNAPSHOT_BLOB);
    await copyFile(path.join(work, SNAPSHOT_BLOB), blob);
    return blob;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Whether `node` starts from `blob`: Node refuses (exit 14) a snapshot made by another version,
 * arch or V8 build, and a missing or truncated file, before running any JavaScript.
 */
export function snapshotUsable(appDir, node = process.execPath) {
  const blob = path.join(appDir, SNAPSHOT_BLOB);
  if (!existsSync(blob)) return false;
  const r = spawnSync(node, ["--snapshot-blob", blob, path.join(appDir, ENTRY), "version"], {
    env: {},
    encoding: "utf8",
  });
  return r.status === 0 && /^\d+\.\d+\.\d+/.test(r.stdout);
}

/**
 * The command that starts the CLI built into `appDir` (the image's ENTRYPOINT, arguments follow):
 * from the snapshot when `node` can start from the blob there, else a plain start of the entry. A
 * blob is checked here, where the image is put together, because at a pod's start Node would exit
 * 14 on a blob of another build before any of our code could fall back; `inImage` names the paths
 * as the container sees them (node at /nodejs/bin/node, the app in /app).
 */
export function shippedEntrypoint(appDir, { node = process.execPath, inImage } = {}) {
  const nodeAt = inImage?.node ?? node;
  const dirAt = inImage?.appDir ?? appDir;
  return snapshotUsable(appDir, node)
    ? [nodeAt, "--snapshot-blob", path.join(dirAt, SNAPSHOT_BLOB), path.join(dirAt, ENTRY)]
    : [nodeAt, path.join(dirAt, ENTRY)];
}

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
    plugins: [fetchApart, commonJsBuiltins],
  });
  const fetchBuild = await build({
    ...common,
    entryPoints: { index: "src/fetch/index.ts" },
    outdir: `${outdir}/fetch`,
    plugins: [commonJsBuiltins],
  });
  assertNoEsmHttpImports(main.metafile);
  assertNoEsmHttpImports(fetchBuild.metafile);
  const outputs = { ...main.metafile.outputs, ...fetchBuild.metafile.outputs };
  if (!Object.keys(main.metafile.outputs).some((f) => f === `${outdir}/sm-injector.mjs`))
    throw new Error("the entry was not built");
  if (!main.metafile.outputs[`${outdir}/sm-injector.mjs`]?.imports.some((i) => i.path === FETCH_BUNDLE))
    throw new Error(`the entry does not import ${FETCH_BUNDLE}: the fetch-apart plugin did not apply`);
  const entry = `${outdir}/sm-injector.mjs`;
  // The shebang goes on the entry only (esbuild keeps none: main.ts has none, chunks must not).
  await writeFile(entry, `#!/usr/bin/env node\n${await readFile(entry, "utf8")}`);
  await chmod(entry, 0o755);
  if (process.argv.includes("--analyze")) {
    const { analyzeMetafile } = await import("esbuild");
    console.log(await analyzeMetafile(main.metafile));
    console.log(await analyzeMetafile(fetchBuild.metafile));
  }
  if (process.argv.includes("--snapshot")) {
    await buildFetchSnapshot(outdir);
    if (!snapshotUsable(outdir)) throw new Error(`${outdir}/${SNAPSHOT_BLOB} was built but does not start`);
    outputs[`${outdir}/${SNAPSHOT_BLOB}`] = {};
  }
  let total = 0;
  for (const f of Object.keys(outputs)) total += (await stat(f)).size;
  let fetchTotal = 0;
  for (const f of Object.keys(fetchBuild.metafile.outputs)) fetchTotal += (await stat(f)).size;
  const blob = outputs[`${outdir}/${SNAPSHOT_BLOB}`]
    ? `; ${SNAPSHOT_BLOB}: ${((await stat(`${outdir}/${SNAPSHOT_BLOB}`)).size / 1024 / 1024).toFixed(1)} MiB`
    : "";
  console.log(
    `built ${entry} (+ ${Object.keys(outputs).length - 1} files, ${(total / 1024).toFixed(0)} KiB in all; fetch: ${(fetchTotal / 1024).toFixed(0)} KiB${blob})`,
  );
}
