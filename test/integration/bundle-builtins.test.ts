// What loading the bundle costs the process beyond our own code: an ES import of node:http makes
// Node build the module's ES facade, which reads every export once, and one of them loads Node's
// bundled undici (800 KiB of JavaScript, ~11 MiB of RSS in the webhook, which never uses it).
// scripts/build.mjs gives the ESM bundles the CommonJS http and https instead (commonjs-builtins).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { requireBundle } from "../helpers/webhook.ts";

const DIST = join(import.meta.dirname, "..", "..", "dist");

/** Every ES module of the bundle but the entry (which runs the CLI when imported). */
function bundleModules(): string[] {
  requireBundle();
  return readdirSync(DIST, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".mjs") && f !== "sm-injector.mjs")
    .map((f) => join(DIST, f));
}

/** The Node built-in modules a fresh process has loaded after importing `files`, by name. */
function builtinsLoadedBy(files: readonly string[]): string[] {
  const script = `for (const f of ${JSON.stringify(files)}) await import(f);
process.stdout.write(JSON.stringify(process.moduleLoadList));`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as string[])
    .filter((m) => m.startsWith("NativeModule "))
    .map((m) => m.slice("NativeModule ".length));
}

test("no module of the bundle loads Node's undici (the ES facade of node:http)", () => {
  const files = bundleModules();
  assert.ok(
    files.some((f) => relative(DIST, f).startsWith("fetch/")),
    "the fetch bundle is among the modules checked",
  );
  const loaded = builtinsLoadedBy(files);
  // The check can see what it looks for: the modules loaded http itself.
  assert.ok(loaded.includes("http"), `http was loaded: ${loaded.join(", ")}`);
  assert.deepEqual(
    loaded.filter((m) => m.includes("undici")),
    [],
    "an ES import of node:http (or node:https) is in the bundle: build it with the commonjs-builtins plugin (scripts/build.mjs)",
  );
});

test("the check sees an ES import of node:http load undici", () => {
  const r = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      'import http from "node:http"; void http; process.stdout.write(String(process.moduleLoadList.some((m) => m.includes("undici"))));',
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.stdout, "true", "Node no longer loads undici for node:http's ES facade: this test can go");
});
