// The image is what the README and the chart say it is, checked on the image itself (built offline
// by scripts/build-images.sh from the Dockerfile, as CI does): both platforms in the OCI index, the
// nonroot user, our CLI as the entrypoint, no shell, nothing of the build machine inside, and the CLI
// running in it under runc with the image's own config.
import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT } from "../helpers/tools.ts";

const execFileAsync = promisify(execFile);
const VERSION = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).version as string;
const ENTRYPOINT = ["/nodejs/bin/node", "/app/sm-injector.mjs"];
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

describe("the sm-injector image (scripts/build-images.sh)", { skip }, () => {
  let work = "";
  const archives = new Map<string, string>();
  const rootfs = new Map<string, string>();
  const configs = new Map<string, ImageConfig>();

  before(async () => {
    // Cached after the first build: this checks the image of the current dist/ and Dockerfile.
    const r = spawnSync("bash", ["scripts/build-images.sh", "sm-injector"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 20 * 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    for (const line of r.stdout.trim().split("\n")) {
      const file = line.split(" ")[1] ?? "";
      const m = /\/sm-injector(?:-(amd64|arm64))?\.oci\.tar$/.exec(file);
      if (m) archives.set(m[1] ?? "index", file);
    }
    work = await mkdtemp(path.join(tmpdir(), "sm-injector-image-test-"));
    // Both unpacked at once (each is ~60 MB to decompress).
    await Promise.all(
      ["amd64", "arm64"].map(async (arch) => {
        const archive = archives.get(arch);
        assert.ok(archive, `no ${arch} archive in: ${r.stdout}`);
        const layout = path.join(work, arch);
        await mkdir(layout);
        await execFileAsync("tar", ["-xf", archive, "-C", layout]);
        const image = `${layout}:localhost/sm-injector:${VERSION}`;
        await execFileAsync("umoci", ["unpack", "--image", image, `${layout}/bundle`]);
        rootfs.set(arch, `${layout}/bundle/rootfs`);
        const index = JSON.parse(readFileSync(path.join(layout, "index.json"), "utf8"));
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
    test(`${arch}: config: nonroot 65532, our CLI as entrypoint, node on PATH, its own platform`, () => {
      const c = configs.get(arch) as ImageConfig;
      assert.equal(c.architecture, arch);
      assert.equal(c.os, "linux");
      assert.equal(c.config.User, "65532:65532");
      assert.deepEqual(c.config.Entrypoint, ENTRYPOINT);
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
      // The app directory is the bundle and nothing else.
      const dist = new Set(walk(path.join(REPO_ROOT, "dist")).filter((p) => !p.endsWith(".blob")));
      const app = walk(path.join(dir, "app")).filter((p) => !p.endsWith(".blob"));
      assert.deepEqual(app.sort(), [...dist].sort(), `${arch}: /app is exactly dist/`);
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
    const spec = JSON.parse(readFileSync(path.join(bundle, "config.json"), "utf8"));
    assert.deepEqual(spec.process.args, [...ENTRYPOINT, "help"], "umoci's spec is the image's config");
    assert.equal(spec.process.user.uid, 65532);
    const run = async (args: string[]) => {
      spec.process.args = args;
      spec.process.terminal = false;
      await writeFile(path.join(bundle, "config.json"), JSON.stringify(spec));
      const id = `sm-injector-image-test-${process.pid}`;
      try {
        return spawnSync("runc", ["run", "--bundle", bundle, id], { encoding: "utf8", timeout: 60_000 });
      } finally {
        spawnSync("runc", ["delete", "--force", id]);
      }
    };
    const version = await run([...ENTRYPOINT, "--version"]);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), VERSION);
    const whoami = await run([
      "node",
      "-e",
      "console.log(process.getuid(), process.cwd(), process.env.NODE_ENV)",
    ]);
    assert.equal(whoami.status, 0, whoami.stderr);
    assert.equal(whoami.stdout.trim(), "65532 /app production");
    const noShell = await run(["/bin/sh", "-c", "true"]);
    assert.notEqual(noShell.status, 0, "no /bin/sh to run");
  });
});
