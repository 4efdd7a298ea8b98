#!/usr/bin/env node
// Runs the test suites with Node's own test runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [unit|integration|e2e ...]   (default: all, in that order)
// Runs only on the pinned Node (scripts/versions.env; SM_INJECTOR_ANY_NODE=1 overrides, CI never does).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { refuseUnpinnedNode } from "./pinned-node.mjs";

const refusal = refuseUnpinnedNode("The test suite");
if (refusal) {
  console.error(refusal);
  process.exit(1);
}

const suites = process.argv.slice(2).length ? process.argv.slice(2) : ["unit", "integration", "e2e"];

function findTests(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(findTests(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const files = suites.flatMap((s) => findTests(join("test", s)));
if (files.length === 0) {
  console.error(`no test files found for suites: ${suites.join(", ")}`);
  process.exit(1);
}
const res = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files],
  { stdio: "inherit" },
);
process.exit(res.status ?? 1);
