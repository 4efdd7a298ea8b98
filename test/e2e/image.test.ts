// The image is what the README and the chart say it is, checked on the image itself (built offline
// by scripts/build-images.sh from the Dockerfile, as CI does): both platforms in the OCI index, the
// nonroot user, our CLI as the entrypoint, no shell, nothing of the build machine inside, and the CLI
// running in it under runc with the image's own config; and the demo's images (the FastAPI example
// app, the stand-in) doing what the e2e tests and the demo rely on.
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/tools.ts";
import { getFreePort } from "./harness/ports.ts";

const execFileAsync = promisify(execFile);
const VERSION = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).version as string;
const PLAIN_ENTRYPOINT = ["/nodejs/bin/node", "/app/sm-injector.mjs"];
const SNAPSHOT_ENTRYPOINT = [
  "/nodejs/bin/node",
  "--snapshot-blob",
  "/app/fetch.snapshot.blob",
  "/app/sm-injector.mjs",
];
// The image of the build machine's arch starts from the start-up snapshot (scripts/build-images.sh
// checked the blob with the image's own node); the other, which no build step can run without
// emulation, starts plainly and carries no blob.
const HOST_ARCH = process.arch === "arm64" ? "arm64" : "amd64";
const entrypointOf = (arch: string) => (arch === HOST_ARCH ? SNAPSHOT_ENTRYPOINT : PLAIN_ENTRYPOINT);
const ENTRYPOINT = entrypointOf("amd64");
// ELF e_machine of the node binary each platform must carry.
const ELF_MACHINE: Record<string, number> = { amd64: 0x3e, arm64: 0xb7 };

interface ImageConfig {
  architecture: string;
  os: string;
  config: { User?: string; Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string };
}

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (umoci unpack keeps file owners; runc)";

/** Every path under `dir` (relative, with a leading /), symlinks not followed. */
function walk(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(dir, prefix))) {
    const rel = `${prefix}/${name}`;
    out.push(rel);
    const st = lstatSync(path.join(dir, rel));
    if (st.isDirectory()) out.push(...walk(dir, rel));
  }
  return out;
}

const blob = (archive: string, digest: string) =>
  JSON.parse(execFileSync("tar", ["-xOf", archive, `blobs/${digest.replace(":", "/")}`]).toString());

/** scripts/build-images.sh TARGETS (cached after the first build): archive path by file name. */
function buildImages(...targets: string[]): Map<string, string> {
  const r = spawnSync("bash", ["scripts/build-images.sh", ...targets], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    timeout: 20 * 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const files = r.stdout
    .trim()
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "");
  return new Map(files.map((f) => [path.basename(f), f]));
}

/** The OCI archive unpacked by umoci into `dir`: an OCI runtime bundle with the image's config. */
async function unpack(archive: string, ref: string, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await execFileAsync("tar", ["-xf", archive, "-C", dir]);
  await execFileAsync("umoci", ["unpack", "--image", `${dir}:${ref}`, `${dir}/bundle`]);
  // Kept as umoci wrote it: each run starts from the image's own config.
  await copyFile(`${dir}/bundle/config.json`, `${dir}/bundle/image-config.json`);
  return `${dir}/bundle`;
}

interface RunOptions {
  env?: string[];
  /** Share the host's network namespace (to reach a server in the container on loopback). */
  hostNetwork?: boolean;
  /** Read-only bind mounts: container path -> host path. */
  binds?: Record<string, string>;
}

/** The runtime spec umoci wrote for the image, with `args` (and options) instead of its command. */
function specFor(bundle: string, args: string[], opts: RunOptions) {
  const spec = JSON.parse(readFileSync(path.join(bundle, "image-config.json"), "utf8"));
  spec.process.args = args;
  spec.process.terminal = false;
  spec.process.env.push(...(opts.env ?? []));
  if (opts.hostNetwork)
    spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== "network");
  for (const [destination, source] of Object.entries(opts.binds ?? {}))
    spec.mounts.push({ destination, source, type: "bind", options: ["rbind", "ro"] });
  return spec;
}

let runs = 0;
/** Runs `args` in the unpacked image under runc (as the image's user); resolves when it exits. */
async function runInImage(bundle: string, args: string[], opts: RunOptions = {}) {
  await writeFile(path.join(bundle, "config.json"), JSON.stringify(specFor(bundle, args, opts)));
  const id = `sm-injector-image-test-${process.pid}-${++runs}`;
  try {
    return spawnSync("runc", ["run", "--bundle", bundle, id], { encoding: "utf8", timeout: 60_000 });
  } finally {
    spawnSync("runc", ["delete", "--force", id]);
  }
}

/** Starts `args` in the image under runc in the background; stop() kills and removes it. */
async function startInImage(bundle: string, args: string[], opts: RunOptions = {}) {
  await writeFile(path.join(bundle, "config.json"), JSON.stringify(specFor(bundle, args, opts)));
  const id = `sm-injector-image-test-${process.pid}-${++runs}`;
  let output = "";
  const child = spawn("runc", ["run", "--bundle", bundle, id], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  return {
    output: () => output,
    exited,
    signal: (sig: string) => spawnSync("runc", ["kill", id, sig]),
    stop: async () => {
      spawnSync("runc", ["kill", id, "KILL"]);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      spawnSync("runc", ["delete", "--force", id]);
    },
  };
}

describe("the sm-injector image (scripts/build-images.sh)", { skip }, () => {
  let work = "";
  const archives = new Map<string, string>();
  const rootfs = new Map<string, string>();
  const configs = new Map<string, ImageConfig>();

  before(async () => {
    // Cached after the first build: this checks the image of the current dist/ and Dockerfile.
    const built = buildImages("sm-injector");
    for (const arch of ["amd64", "arm64", "index"]) {
      const file = built.get(arch === "index" ? "sm-injector.oci.tar" : `sm-injector-${arch}.oci.tar`);
      assert.ok(file, `no ${arch} archive in ${[...built.keys()].join(", ")}`);
      archives.set(arch, file);
    }
    work = await mkdtemp(path.join(tmpdir(), "sm-injector-image-test-"));
    // Both unpacked at once (each is ~60 MB to decompress).
    await Promise.all(
      ["amd64", "arm64"].map(async (arch) => {
        const archive = archives.get(arch) as string;
        const bundle = await unpack(archive, `localhost/sm-injector:${VERSION}`, path.join(work, arch));
        rootfs.set(arch, `${bundle}/rootfs`);
        const index = JSON.parse(readFileSync(path.join(work, arch, "index.json"), "utf8"));
        const manifest = blob(archive, index.manifests[0].digest);
        configs.set(arch, blob(archive, manifest.config.digest));
      }),
    );
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("the multi-arch OCI index names linux/amd64 and linux/arm64, each the per-arch image", () => {
    const archive = archives.get("index") as string;
    assert.ok(archive, "sm-injector.oci.tar");
    const top = JSON.parse(execFileSync("tar", ["-xOf", archive, "index.json"]).toString());
    assert.equal(top.manifests.length, 1);
    assert.equal(
      top.manifests[0].annotations["org.opencontainers.image.ref.name"],
      `localhost/sm-injector:${VERSION}`,
    );
    const index = blob(archive, top.manifests[0].digest);
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    const platforms = index.manifests.map(
      (m: { platform: { os: string; architecture: string } }) =>
        `${m.platform.os}/${m.platform.architecture}`,
    );
    assert.deepEqual(platforms.sort(), ["linux/amd64", "linux/arm64"]);
    for (const arch of ["amd64", "arm64"]) {
      const single = JSON.parse(
        execFileSync("tar", ["-xOf", archives.get(arch) as string, "index.json"]).toString(),
      );
      const inIndex = index.manifests.find(
        (m: { platform: { architecture: string } }) => m.platform.architecture === arch,
      );
      assert.equal(inIndex.digest, single.manifests[0].digest, `${arch}: the index holds the same image`);
    }
  });

  for (const arch of ["amd64", "arm64"]) {
    const how = arch === HOST_ARCH ? "from the start-up snapshot" : "plainly (no blob)";
    test(`${arch}: config: nonroot 65532, our CLI as entrypoint (${how}), node on PATH, its own platform`, () => {
      const c = configs.get(arch) as ImageConfig;
      assert.equal(c.architecture, arch);
      assert.equal(c.os, "linux");
      assert.equal(c.config.User, "65532:65532");
      assert.deepEqual(c.config.Entrypoint, entrypointOf(arch));
      assert.deepEqual(c.config.Cmd, ["help"]);
      assert.equal(c.config.WorkingDir, "/app");
      assert.ok(c.config.Env?.includes("NODE_ENV=production"));
      assert.match(c.config.Env?.find((e) => e.startsWith("PATH=")) ?? "", /^PATH=\/nodejs\/bin:/);
      const elf = readFileSync(path.join(rootfs.get(arch) as string, "nodejs/bin/node")).subarray(0, 20);
      assert.equal(elf.subarray(0, 4).toString("latin1"), "\x7fELF");
      assert.equal(elf.readUInt16LE(18), ELF_MACHINE[arch], `${arch}: node is built for ${arch}`);
    });

    test(`${arch}: no shell, no package manager, nothing of the build machine or the repository`, () => {
      const dir = rootfs.get(arch) as string;
      const paths = walk(dir);
      // Programs by name (files and links; /var/lib/dpkg/status.d is a directory scanners read).
      const names = paths
        .filter((p) => !lstatSync(path.join(dir, p)).isDirectory())
        .map((p) => path.basename(p));
      for (const shell of ["sh", "bash", "dash", "ash", "zsh", "busybox"])
        assert.ok(!names.includes(shell), `${arch}: a shell (${paths.find((p) => p.endsWith(`/${shell}`))})`);
      for (const tool of ["apt", "apt-get", "dpkg", "npm", "npx", "pip", "perl"])
        assert.ok(!names.includes(tool), `${arch}: ${tool}`);
      const forbidden = [
        /^\/root\/./, // /root/.npm, /root/.cache, shell history: the build user's home stays empty
        /\/\.git(\/|$)/,
        /\/\.(npmrc|netrc|aws|docker|ssh|gnupg|kube|bash_history)(\/|$)/,
        /\/node_modules(\/|$)/,
        /\/id_(rsa|ed25519|ecdsa)/,
        /\.(pem|key|p12|pfx)$/,
        /^\/etc\/(resolv\.conf|hostname|hosts|machine-id|apt|dpkg)(\/|$)/,
        /^\/(src|test|charts|scripts)(\/|$)/,
      ];
      for (const p of paths)
        for (const re of forbidden) assert.doesNotMatch(p, re, `${arch}: ${p} does not belong in the image`);
      // The app directory is the bundle and nothing else; the blob only where the entrypoint reads it.
      const withBlob = arch === HOST_ARCH;
      const dist = walk(path.join(REPO_ROOT, "dist")).filter((p) => withBlob || !p.endsWith(".blob"));
      const app = walk(path.join(dir, "app"));
      assert.deepEqual(
        app.sort(),
        dist.sort(),
        `${arch}: /app is exactly dist/${withBlob ? "" : " but the blob"}`,
      );
      // Only the nonroot user's home belongs to it; everything else is root's and not world-writable
      // (but /tmp).
      for (const p of paths) {
        const st = lstatSync(path.join(dir, p));
        if (p === "/home/nonroot") assert.equal(st.uid, 65532);
        else assert.equal(st.uid, 0, `${arch}: ${p} is owned by ${st.uid}`);
        if (p !== "/tmp" && !st.isSymbolicLink())
          assert.equal(st.mode & 0o002, 0, `${arch}: ${p} is world-writable`);
      }
      const passwd = readFileSync(path.join(dir, "etc/passwd"), "utf8");
      assert.match(passwd, /^nonroot:x:65532:65532:[^:]*:\/home\/nonroot:\/sbin\/nologin$/m);
    });
  }

  test("amd64: `sm-injector --version` and `node -e` run in the image under runc, as 65532", async () => {
    const bundle = path.dirname(rootfs.get("amd64") as string);
    const spec = JSON.parse(readFileSync(path.join(bundle, "image-config.json"), "utf8"));
    assert.deepEqual(spec.process.args, [...ENTRYPOINT, "help"], "umoci's spec is the image's config");
    assert.equal(spec.process.user.uid, 65532);
    const version = await runInImage(bundle, [...ENTRYPOINT, "--version"]);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), VERSION);
    const whoami = await runInImage(bundle, [
      "node",
      "-e",
      "console.log(process.getuid(), process.cwd(), process.env.NODE_ENV)",
    ]);
    assert.equal(whoami.status, 0, whoami.stderr);
    assert.equal(whoami.stdout.trim(), "65532 /app production");
    const noShell = await runInImage(bundle, ["/bin/sh", "-c", "true"]);
    assert.notEqual(noShell.status, 0, "no /bin/sh to run");
  });

  test("amd64: the blob is dist/'s, and `fetch` through the entrypoint starts from it in the image (no spec: a coded refusal, not exit 14)", async () => {
    const bundle = path.dirname(rootfs.get("amd64") as string);
    const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");
    assert.equal(
      sha(path.join(rootfs.get("amd64") as string, "app/fetch.snapshot.blob")),
      sha(path.join(REPO_ROOT, "dist/fetch.snapshot.blob")),
    );
    // The image's own entrypoint, as the injected init container (args ["fetch"]) runs it. Its node
    // is the one that built the blob: Node exits 14 on a blob of any other build.
    const entrypoint = configs.get("amd64")?.config.Entrypoint ?? [];
    assert.ok(entrypoint.includes("--snapshot-blob"), entrypoint.join(" "));
    const fetch = await runInImage(bundle, [...entrypoint, "fetch"]);
    assert.equal(fetch.status, 2, `${fetch.stderr}${fetch.stdout}`);
    assert.match(fetch.stderr, /^sm-injector fetch: SM_INJECTOR_SPEC is not set: .*\[spec-missing\]$/m);
  });
});

describe("the demo's images: the FastAPI example app and the stand-in", { skip }, () => {
  let work = "";
  let app = "";
  let standin = "";

  before(async () => {
    const built = buildImages("app", "standin");
    const appArchive = built.get("app-amd64.oci.tar");
    const standinArchive = built.get("standin-amd64.oci.tar");
    assert.ok(appArchive && standinArchive, [...built.keys()].join(", "));
    work = await mkdtemp(path.join(tmpdir(), "sm-injector-image-test-"));
    [app, standin] = await Promise.all([
      unpack(appArchive, `localhost/sm-injector-example-app:${VERSION}`, path.join(work, "app")),
      unpack(standinArchive, `localhost/sm-injector-standin:${VERSION}`, path.join(work, "standin")),
    ]);
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("app: uvicorn serves the SHA-256 of each setting of the env file (pydantic-settings), never a value", async () => {
    // The env file as the init container writes it (dotenv format), in a directory mounted like the
    // pod's emptyDir.
    const envDir = path.join(work, "run-sm-injector");
    await mkdir(envDir);
    const values = { DATABASE_URL: "postgresql://erp:p@ss w'rd@db:5432/erp", JWT_SECRET_KEY: 'k"e=y#1' };
    const dotenv = (v: string) => `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
    await writeFile(
      path.join(envDir, "env"),
      Object.entries(values)
        .map(([k, v]) => `${k}=${dotenv(v)}\n`)
        .join(""),
    );
    await chmod(envDir, 0o755);
    await chmod(path.join(envDir, "env"), 0o444);
    const port = await getFreePort();
    const server = await startInImage(
      app,
      ["uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", String(port)],
      { hostNetwork: true, binds: { "/run/sm-injector": envDir } },
    );
    try {
      const body = await waitForJson(`http://127.0.0.1:${port}/settings`, server.output);
      const sha = (v: string) => `sha256:${createHash("sha256").update(v).digest("hex")}`;
      assert.deepEqual(body, {
        DATABASE_URL: sha(values.DATABASE_URL),
        JWT_SECRET_KEY: sha(values.JWT_SECRET_KEY),
      });
      for (const v of Object.values(values))
        assert.ok(!server.output().includes(v), "a value in the app's log");
    } finally {
      await server.stop();
    }
  });

  test("app: a missing setting stops it at start-up (pydantic-settings validation), naming the setting", async () => {
    const envDir = path.join(work, "run-partial");
    await mkdir(envDir);
    await writeFile(path.join(envDir, "env"), 'DATABASE_URL="postgresql://db/erp"\n');
    await chmod(path.join(envDir, "env"), 0o444);
    const r = await runInImage(app, ["uvicorn", "app.main:app", "--port", "1"], {
      binds: { "/run/sm-injector": envDir },
    });
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /settings from \/run\/sm-injector\/env are incomplete: JWT_SECRET_KEY: Field required/,
    );
    assert.doesNotMatch(r.stderr, /postgresql:\/\/db\/erp/, "the value it did load is not printed");
  });

  test("stand-in: prints its argv and exits 0; as a sidecar it stays up until SIGTERM, also through `sh -c`", async () => {
    const once = await runInImage(standin, ["/standin", "migrate", "--to", "a b"], {
      env: ["SM_INJECTOR_STANDIN_FOR=registry.example.com/erp/migrate:1"],
    });
    assert.equal(once.status, 0, once.stderr);
    assert.equal(
      once.stdout,
      "stand-in for registry.example.com/erp/migrate:1: argv: [migrate] [--to] [a b]\n",
    );
    const sidecar = await startInImage(standin, ["/bin/sh", "-c", 'exec "$0" "$@"', "/standin", "proxy"], {
      env: ["SM_INJECTOR_STANDIN_KEEP_RUNNING=true"],
    });
    try {
      const still = await Promise.race([
        sidecar.exited,
        new Promise((r) => setTimeout(() => r("running"), 1_500)),
      ]);
      assert.equal(still, "running", sidecar.output());
      assert.match(sidecar.output(), /argv: \[proxy\]/);
      sidecar.signal("TERM");
      assert.equal(await sidecar.exited, 0);
    } finally {
      await sidecar.stop();
    }
  });
});

/** GET `url` until it answers JSON (the server is starting), for up to 30 s. */
async function waitForJson(url: string, output: () => string): Promise<unknown> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return await res.json();
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) assert.fail(`${url} did not answer in 30 s:\n${output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
