// One runtime: the Node.js pinned in scripts/versions.env is the one under test, the bundle's esbuild
// target, the image's major (Dockerfile), `engines` and @types/node's major; scripts/install-node.sh
// finds or caches exactly that binary, and the test runner refuses any other Node.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { common as esbuildOptions } from "../../scripts/build.mjs";
import { PINNED_NODE_MAJOR, PINNED_NODE_VERSION, refuseUnpinnedNode } from "../../scripts/pinned-node.mjs";
import { REPO_ROOT } from "../helpers/tools.ts";

const read = (p: string) => readFile(path.join(REPO_ROOT, p), "utf8");
const major = (range: string) => Number(/(\d+)/.exec(range)?.[1]);

describe("the pinned Node.js (scripts/versions.env)", () => {
  test("is the Node running these tests", { skip: process.env.SM_INJECTOR_ANY_NODE === "1" }, () => {
    assert.equal(process.version, `v${PINNED_NODE_VERSION}`);
  });

  test("package.json: engines and @types/node name its major (the installed @types/node too)", async () => {
    const pkg = JSON.parse(await read("package.json"));
    assert.equal(pkg.engines.node, `^${PINNED_NODE_VERSION}`);
    assert.equal(major(pkg.devDependencies["@types/node"]), PINNED_NODE_MAJOR);
    const types = JSON.parse(await read("node_modules/@types/node/package.json"));
    assert.equal(major(types.version), PINNED_NODE_MAJOR, "npm ci after changing @types/node");
  });

  test("the bundle targets it (esbuild's target in scripts/build.mjs)", () => {
    assert.equal(esbuildOptions.target, `node${PINNED_NODE_MAJOR}`);
  });

  test("the Dockerfile's NODE_MAJOR is its major", async () => {
    const m = /^ARG NODE_MAJOR=(\d+)$/m.exec(await read("Dockerfile"));
    assert.ok(m, "ARG NODE_MAJOR=<major> before the first FROM");
    assert.equal(Number(m[1]), PINNED_NODE_MAJOR);
    // packaging.test.ts checks that both stages' FROM lines use it.
  });

  test("any other Node is refused with the way to get the pinned one, unless SM_INJECTOR_ANY_NODE=1", () => {
    assert.equal(refuseUnpinnedNode("The test suite", `v${PINNED_NODE_VERSION}`, {}), undefined);
    const refusal = refuseUnpinnedNode("The test suite", "v20.20.2", {});
    assert.match(refusal ?? "", new RegExp(`v${PINNED_NODE_VERSION}.*v20\\.20\\.2`));
    assert.match(refusal ?? "", /scripts\/install-node\.sh/);
    assert.equal(refuseUnpinnedNode("The test suite", "v20.20.2", { SM_INJECTOR_ANY_NODE: "1" }), undefined);
    assert.notEqual(
      refuseUnpinnedNode("The test suite", "v20.20.2", { SM_INJECTOR_ANY_NODE: "yes" }),
      undefined,
    );
  });

  test("scripts/run-tests.mjs refuses to run on another Node", () => {
    // The real runner on this node, with process.version made to read as another version.
    const r = spawnSync(
      process.execPath,
      [
        "--import",
        "data:text/javascript,Object.defineProperty(process,'version',{value:'v20.20.2'})",
        "scripts/run-tests.mjs",
        "unit",
      ],
      { cwd: REPO_ROOT, encoding: "utf8", env: { PATH: process.env.PATH ?? "" }, timeout: 30_000 },
    );
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`pinned Node\\.js v${PINNED_NODE_VERSION}.*v20\\.20\\.2`));
    assert.doesNotMatch(r.stdout, /# tests/, "no test ran");
  });
});

describe("scripts/install-node.sh", () => {
  // A PATH with no node at all (the machine's /usr/bin may hold one of any version): only the tools
  // the script needs before it looks at the cache.
  let tools = "";
  before(async () => {
    tools = await mkdtemp(path.join(tmpdir(), "sm-injector-tools-"));
    for (const t of ["dirname", "uname"]) {
      const where = spawnSync("bash", ["-c", `command -v ${t}`], { encoding: "utf8" }).stdout.trim();
      await symlink(where, path.join(tools, t));
    }
  });
  after(() => rm(tools, { recursive: true, force: true }));
  const bash = spawnSync("bash", ["-c", "command -v bash"], { encoding: "utf8" }).stdout.trim();
  const run = (env: Record<string, string>) =>
    spawnSync(bash, [path.join(REPO_ROOT, "scripts/install-node.sh")], {
      encoding: "utf8",
      env: { HOME: process.env.HOME ?? "/root", ...env },
      timeout: 60_000,
    });

  test("prints the directory of the node on PATH when that is the pinned one", () => {
    const dir = path.dirname(process.execPath);
    const r = run({ PATH: `${dir}:${tools}` });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").at(-1), dir);
  });

  test("otherwise uses the cached binary, checking that it is the pinned version", async () => {
    const cache = await mkdtemp(path.join(tmpdir(), "sm-injector-node-cache-"));
    try {
      const bin = path.join(cache, `node-v${PINNED_NODE_VERSION}`, "bin");
      await mkdir(bin, { recursive: true });
      await symlink(process.execPath, path.join(bin, "node"));
      const r = run({ PATH: tools, SM_INJECTOR_CACHE: cache });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").at(-1), bin);
      assert.match(r.stderr, /cached/);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});
