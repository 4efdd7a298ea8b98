/**
 * The demo's cluster: the real one-node cluster of the e2e tests (test/e2e/harness/real-node.ts),
 * the images built offline (scripts/build-images.sh) and imported into its containerd, and the chart
 * installed with helm from the project image.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../../test/e2e/harness/controlplane.ts";
import { CHART_DIR, runHelm } from "../../test/helpers/tools.ts";

const execFileAsync = promisify(execFile);

export interface DemoImage {
  name: string;
  archive: string;
}
export interface DemoImages {
  sminjector: DemoImage;
  standin: DemoImage;
  app: DemoImage;
}

const ARCHIVES: Record<keyof DemoImages, string> = {
  sminjector: "sm-injector-amd64.oci.tar",
  standin: "standin-amd64.oci.tar",
  app: "app-amd64.oci.tar",
};

/** The project image, the stand-in and the example app: built offline once, then cached (seconds). */
export async function buildImages(): Promise<DemoImages> {
  const { stdout } = await execFileAsync(
    "bash",
    [path.join(REPO_ROOT, "scripts", "build-images.sh"), "sm-injector", "standin", "app"],
    { maxBuffer: 16 * 1024 * 1024, cwd: REPO_ROOT },
  );
  const found = new Map<string, DemoImage>();
  for (const l of stdout.split("\n")) {
    const [name, archive] = l.trim().split(/\s+/);
    if (name && archive) found.set(path.basename(archive), { name, archive });
  }
  const pick = (k: keyof DemoImages) => {
    const image = found.get(ARCHIVES[k]);
    if (!image) throw new Error(`scripts/build-images.sh printed no ${ARCHIVES[k]}`);
    return image;
  };
  return { sminjector: pick("sminjector"), standin: pick("standin"), app: pick("app") };
}

/**
 * The images as this checkout built them, copied to `dir`. The image cache is shared by every
 * checkout on the machine and keyed by what went in (dist/ included): another checkout's build
 * replaces an archive in place, even between our build and our import. So: build, copy under the
 * cache's lock, build again; the copy is ours when the second build left the archive's key as it was
 * (a foreign archive would have been rebuilt, changing its key).
 */
export async function ownImages(dir: string, say: (line: string) => void): Promise<DemoImages> {
  for (let attempt = 1; ; attempt++) {
    const built = await buildImages();
    const keys = await copyUnderLock(built, dir);
    const again = await buildImages();
    const now = await Promise.all(
      Object.values(again).map((i) => readFile(`${i.archive}.key`, "utf8").catch(() => "")),
    );
    if (now.join() === keys.join())
      return Object.fromEntries(
        Object.entries(built).map(([k, i]) => [
          k,
          { name: i.name, archive: path.join(dir, path.basename(i.archive)) },
        ]),
      ) as unknown as DemoImages;
    if (attempt === 5) throw new Error("another checkout keeps rebuilding the shared image cache; try again");
    say("another checkout rebuilt the shared image cache meanwhile: building again");
  }
}

/** Copies each archive to `dir` holding the cache's lock (scripts/build-images.sh takes it to build); returns their keys. */
async function copyUnderLock(images: DemoImages, dir: string): Promise<string[]> {
  const lock = path.join(path.dirname(images.sminjector.archive), ".lock");
  const script = Object.values(images)
    .map((_, i) => `cat "$${2 * i + 1}.key"; printf '\\0'; cp "$${2 * i + 1}" "$${2 * i + 2}"`)
    .join("; ");
  const args = Object.values(images).flatMap((i) => [i.archive, path.join(dir, path.basename(i.archive))]);
  const { stdout } = await execFileAsync("flock", [lock, "sh", "-c", `set -e; ${script}`, "sh", ...args]);
  return stdout.split("\0").slice(0, -1);
}

/** `helm install` of charts/sm-injector with the project image (never pulled), waiting for its pods. */
export async function installChart(
  kubeconfig: string,
  image: string,
  namespace: string,
  region: string,
): Promise<string> {
  const at = image.lastIndexOf(":");
  const r = await runHelm(
    [
      "install",
      "sm-injector",
      CHART_DIR,
      "--namespace",
      namespace,
      "--create-namespace",
      "--set",
      `image.repository=${image.slice(0, at)},image.tag=${image.slice(at + 1)},image.pullPolicy=Never,injector.defaults.region=${region}`,
      "--wait",
      "--timeout",
      "180s",
    ],
    { env: { KUBECONFIG: kubeconfig } },
  );
  if (r.code !== 0) throw new Error(`helm install failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}
