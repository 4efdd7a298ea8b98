// The start-up snapshot (dist/fetch.snapshot.blob, `node scripts/build.mjs --snapshot`): what is in
// it (no credentials, no build-time clock, environment or host values, nothing secret-looking; the
// same bytes from two builds), that `fetch` started from it behaves as a plain start does against
// moto, and that a missing blob or one from another Node build falls back to the plain start.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { hostname, release, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  buildFetchSnapshot,
  SNAPSHOT_BLOB,
  shippedEntrypoint,
  snapshotUsable,
} from "../../scripts/build.mjs";
import type { FetchSpecInput } from "../../src/contract/fetch-spec.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.ts";
import { fetchEnv, type Moto, runFetchCli, startMoto } from "../helpers/moto.ts";
import { REPO_ROOT } from "../helpers/webhook.ts";

const DIST = join(REPO_ROOT, "dist");
const CANARY = "canary-7f3a9c1e-do-not-ship";

/** Byte positions at which two equally long buffers differ (every byte, if the lengths differ). */
function differingBytes(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe("the start-up snapshot as built", () => {
  let dir = "";
  let blob = Buffer.alloc(0);
  const saved = { ...process.env };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-test-"));
    // Whatever this process has in its environment must not reach the builder.
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "AKIACANARYCANARY0000",
      AWS_SECRET_ACCESS_KEY: CANARY,
      AWS_SESSION_TOKEN: CANARY,
      AWS_REGION: "eu-canary-1",
      SM_INJECTOR_SPEC: CANARY,
    });
    try {
      blob = await readFile(await buildFetchSnapshot(dir));
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("holds no value of the build's environment", () => {
    // (The builder keeps its own argv: the node binary's path, which may lie under HOME.)
    const home = process.env.HOME ?? "";
    const values = [CANARY, "AKIACANARYCANARY0000", "eu-canary-1", dir];
    if (!process.execPath.startsWith(home)) values.push(home);
    for (const value of values)
      if (value.length >= 4) assert.equal(blob.indexOf(value), -1, `the blob contains ${value}`);
    // Not every host name is long enough to be told apart from other bytes.
    if (hostname().length >= 6) assert.equal(blob.indexOf(hostname()), -1, "the blob names this host");
  });

  test("holds nothing the build-time warm-up fetch rendered, wrote or logged", () => {
    // The warm-up runs a whole fetch (src/cli/fetch-snapshot.ts): its file's lines, its log lines'
    // values and the termination message it recorded must all be garbage by the time the heap is saved.
    for (const made of [
      "WARM_UP='warm-up'",
      "W_username='warm-up'",
      "WARM_UP_URL='postgres://warm-up@db:5432'",
      '"variables":6',
      '"apiCalls":2,"versionsRecorded":true',
      '{"sm-injector/versions":1,"digest":',
    ])
      assert.equal(blob.indexOf(made), -1, `the blob holds ${made}`);
  });

  test("holds no build date (a request signed at build time would leave one)", () => {
    const now = new Date().toISOString(); // 2026-12-02T14:00:00.000Z
    for (const date of [now.slice(0, 10), now.slice(0, 10).replaceAll("-", "")])
      assert.equal(blob.indexOf(date), -1, `the blob contains today's date ${date}`);
  });

  test("holds no build time as a number (a clock read at build time and kept, e.g. a clock offset)", () => {
    // Milliseconds since the epoch, either sign, as V8 stores a number that is not a small integer:
    // an 8-byte double, at any offset. The blob was built moments ago, by before().
    const now = Date.now();
    const found: number[] = [];
    for (let i = 0; i + 8 <= blob.length; i++) {
      const v = Math.abs(blob.readDoubleLE(i));
      if (v > now - 6 * 3600_000 && v < now + 3600_000) found.push(i);
    }
    assert.deepEqual(found, [], "the blob holds the build time (a Date.now() kept in the heap)");
  });

  test("holds nothing that looks like a credential", () => {
    const text = blob.toString("latin1");
    const patterns: [string, RegExp][] = [
      ["an AWS access key id", /\b(AKIA|ASIA)[0-9A-Z]{16}\b/],
      ["a private key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
      ["a JWT (a web identity token)", /eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\./],
      ["a SigV4 signature", /Signature=[0-9a-f]{64}/],
    ];
    for (const [what, re] of patterns) assert.doesNotMatch(text, re, `the blob holds ${what}`);
  });

  test("two builds give the same bytes but for a few of Node's own (its checksum among them)", async () => {
    const again = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-test-"));
    try {
      const second = await readFile(await buildFetchSnapshot(again));
      // A clock or host value read at build time differs between builds in many more bytes; Node's
      // builder itself leaves ~6 (a trivial snapshot differs from itself that much).
      assert.ok(differingBytes(blob, second) <= 16, `${differingBytes(blob, second)} bytes differ`);
    } finally {
      await rm(again, { recursive: true, force: true });
    }
  });
});

const specFor = (out: string, entries: FetchSpecInput["entries"]): FetchSpecInput => ({
  version: 1,
  format: "shell",
  outputDir: out,
  fileName: "env",
  fileMode: 0o400,
  timeoutSeconds: 20,
  entries,
});

/**
 * A stand-in for `node` that runs it as on another build machine: its own UTS namespace with host
 * name `host`, and the kernel release the UNAME26 personality reports (2.6.x) instead of this one's.
 */
async function nodeOnAnotherHost(dir: string, host: string): Promise<string> {
  const wrapper = join(dir, "node-on-another-host");
  await writeFile(
    wrapper,
    [
      "#!/bin/sh",
      // The builder's environment has no PATH: every program by its path.
      `exec /usr/bin/unshare -u /bin/sh -c '/usr/bin/hostname "$0" && exec /usr/bin/setarch "$(/usr/bin/uname -m)" --uname-2.6 "$@"' ${host} ${process.execPath} "$@"`,
      "",
    ].join("\n"),
  );
  await chmod(wrapper, 0o755);
  return wrapper;
}

describe("the snapshot holds none of the build machine's uname", {
  skip: process.getuid?.() === 0 ? false : "needs root (unshare -u)",
}, () => {
  let dir = "";
  let blob = Buffer.alloc(0);
  let blobPath = "";
  let moto: Moto;
  let proxy: FaultProxy;
  const buildHost = `sm-build-${randomBytes(6).toString("hex")}`;
  let buildRelease = "";

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-host-"));
    const node = await nodeOnAnotherHost(dir, buildHost);
    // The stand-in does show the builder another host (else this test could not fail).
    const seen = spawnSync(node, ["-p", "require('os').release() + ' ' + require('os').hostname()"], {
      env: {},
      encoding: "utf8",
    });
    assert.equal(seen.status, 0, seen.stderr);
    [buildRelease = ""] = seen.stdout.trim().split(" ");
    assert.equal(seen.stdout.trim(), `${buildRelease} ${buildHost}`);
    assert.match(buildRelease, /^2\.6\.\d+/);
    assert.notEqual(buildRelease, release());
    blobPath = await buildFetchSnapshot(dir, node);
    blob = await readFile(blobPath);
    moto = await startMoto();
    proxy = await startFaultProxy(moto.endpoint);
    await moto.createSecret("erp/ua", "v");
  });
  after(async () => {
    await proxy?.close();
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("neither its kernel release nor its host name is in the blob", () => {
    assert.equal(blob.indexOf(buildRelease), -1, `the blob holds the build's kernel release ${buildRelease}`);
    assert.equal(blob.indexOf(buildHost), -1, `the blob holds the build's host name ${buildHost}`);
  });

  test("the SDK's User-Agent names the kernel fetch runs on, not the build's", async () => {
    const out = await mkdtemp(join(dir, "out-"));
    const spec = specFor(out, [{ kind: "value", source: { secretId: "erp/ua" }, env: "UA" }]);
    const env = fetchEnv(proxy.endpoint, dir, { SM_INJECTOR_SPEC: JSON.stringify(spec) });
    const command = [process.execPath, "--snapshot-blob", blobPath, join(DIST, "sm-injector.mjs"), "fetch"];
    const r = await runFetchCli(env, { command });
    assert.equal(r.code, 0, r.stderr);
    const ua = proxy.userAgents.at(-1) ?? "";
    assert.ok(ua.includes(`os/linux#${release()}`), `User-Agent: ${ua}`);
    assert.ok(!ua.includes(buildRelease), `User-Agent: ${ua}`);
  });
});

describe("fetch from the snapshot against moto", () => {
  let moto: Moto;
  let home = "";
  const plain = [process.execPath, join(DIST, "sm-injector.mjs"), "fetch"];
  const fromSnapshot = [
    process.execPath,
    "--snapshot-blob",
    join(DIST, SNAPSHOT_BLOB),
    join(DIST, "sm-injector.mjs"),
    "fetch",
  ];

  before(async () => {
    assert.ok(
      snapshotUsable(DIST),
      `${DIST}/${SNAPSHOT_BLOB} is missing or does not start; npm run build makes it`,
    );
    moto = await startMoto();
    home = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-home-"));
    await moto.createSecret("erp/production/database", JSON.stringify({ DATABASE_URL: "postgres://x/y" }));
    await moto.createSecret("erp/staging/jwt/secret_key", "jwt 'value' $HOME");
  });
  after(async () => {
    await moto?.stop();
    if (home) await rm(home, { recursive: true, force: true });
  });

  async function both(entries: FetchSpecInput["entries"]) {
    const runs = [];
    for (const command of [plain, fromSnapshot]) {
      const out = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-out-"));
      const env = fetchEnv(moto.endpoint, home, { SM_INJECTOR_SPEC: JSON.stringify(specFor(out, entries)) });
      const r = await runFetchCli(env, { command });
      const file = await readFile(join(out, "env"), "utf8").catch(() => undefined);
      await rm(out, { recursive: true, force: true });
      const messages = r.logs.map((l) => l.msg);
      runs.push({ code: r.code, stderr: r.stderr.replaceAll(out, "OUT"), file, messages });
    }
    return runs;
  }

  test("the same file, exit code and log lines as a plain start", async () => {
    const [a, b] = await both([
      { kind: "value", source: { secretId: "erp/production/database" }, env: "DB", key: "DATABASE_URL" },
      { kind: "value", source: { secretId: "erp/staging/jwt/secret_key" }, env: "JWT" },
    ]);
    assert.equal(a?.code, 0, a?.stderr);
    assert.deepEqual(b, a);
    assert.match(b?.file ?? "", /export JWT='jwt '\\''value'\\'' \$HOME'/);
  });

  test("the same refusal for a missing secret", async () => {
    const [a, b] = await both([{ kind: "value", source: { secretId: "erp/production/missing" }, env: "X" }]);
    assert.equal(a?.code, 1);
    assert.deepEqual(b, a);
  });

  test("every other command runs the entry script (version, webhook --help)", () => {
    const run = (args: string[]) =>
      spawnSync(fromSnapshot[0] as string, [...fromSnapshot.slice(1, -1), ...args], {
        env: { PATH: process.env.PATH ?? "" },
        encoding: "utf8",
      });
    const v = run(["version"]);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
    const w = run(["webhook", "--help"]);
    assert.equal(w.status, 0, w.stderr);
    assert.match(w.stdout, /--tls-cert-file/);
    const f = run(["fetch", "--help"]);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /SM_INJECTOR_SPEC/);
  });
});

describe("without a usable blob the image starts plainly", () => {
  let app = "";
  before(async () => {
    app = await mkdtemp(join(tmpdir(), "sm-injector-snapshot-app-"));
    await cp(DIST, app, { recursive: true });
  });
  after(async () => {
    if (app) await rm(app, { recursive: true, force: true });
  });
  const plainStart = () => [process.execPath, join(app, "sm-injector.mjs")];

  test("a blob this node starts from: the snapshot", () => {
    assert.deepEqual(shippedEntrypoint(app), [
      process.execPath,
      "--snapshot-blob",
      join(app, SNAPSHOT_BLOB),
      join(app, "sm-injector.mjs"),
    ]);
  });

  test("a blob of another Node build (Node itself refuses it, exit 14): plain start", async () => {
    const blob = await readFile(join(app, SNAPSHOT_BLOB));
    const version = Buffer.from(process.version.slice(1));
    const at = blob.indexOf(version);
    assert.ok(at > 0 && at < 64, "the blob's header names the Node version");
    const other = Buffer.from(blob);
    other.write("99.99.99".slice(0, version.length), at, "latin1");
    await writeFile(join(app, SNAPSHOT_BLOB), other);
    const refused = spawnSync(process.execPath, ["--snapshot-blob", join(app, SNAPSHOT_BLOB), "-e", "0"], {
      encoding: "utf8",
    });
    assert.equal(refused.status, 14, refused.stderr);
    assert.deepEqual(shippedEntrypoint(app), plainStart());
  });

  test("a truncated blob: plain start", async () => {
    const blob = await readFile(join(DIST, SNAPSHOT_BLOB));
    await writeFile(join(app, SNAPSHOT_BLOB), blob.subarray(0, 4096));
    assert.deepEqual(shippedEntrypoint(app), plainStart());
  });

  test("no blob (an image built without the snapshot step, e.g. arm64): plain start, and fetch runs", async () => {
    await rm(join(app, SNAPSHOT_BLOB), { force: true });
    assert.deepEqual(shippedEntrypoint(app), plainStart());
    const r = spawnSync(plainStart()[0] as string, [...plainStart().slice(1), "fetch"], {
      env: { PATH: process.env.PATH ?? "", SM_INJECTOR_SPEC: "{}" },
      encoding: "utf8",
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /does not match this version's schema/);
  });

  test("in the image's paths", () => {
    assert.deepEqual(shippedEntrypoint(app, { inImage: { node: "/nodejs/bin/node", appDir: "/app" } }), [
      "/nodejs/bin/node",
      "/app/sm-injector.mjs",
    ]);
  });
});
