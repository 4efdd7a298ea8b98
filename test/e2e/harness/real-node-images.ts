/**
 * The project's image for the real node: the amd64 OCI archive that scripts/build-images.sh builds
 * offline from the Dockerfile (cached; seconds when nothing changed), or, where that script is not
 * there, an archive it built before in the cache.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { CHART_DIR, type RunResult, runHelm } from "../../helpers/tools.ts";
import { REPO_ROOT } from "./controlplane.ts";

const execFileAsync = promisify(execFile);
const BUILD_IMAGES = path.join(REPO_ROOT, "scripts", "build-images.sh");

export interface ImageArchive {
  /** The image reference the archive names (what pods must use). */
  name: string;
  archive: string;
}

function packageVersion(): string {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).version;
}

/**
 * The amd64 archive of an image scripts/build-images.sh builds (`target`, archive `<stem>-amd64.oci.tar`,
 * reference `localhost/<repository>:VERSION`), or why there is none (a reason to skip).
 */
async function builtImage(target: string, stem: string, repository: string): Promise<ImageArchive | string> {
  const file = `${stem}-amd64.oci.tar`;
  if (existsSync(BUILD_IMAGES)) {
    const { stdout } = await execFileAsync("bash", [BUILD_IMAGES, target], {
      maxBuffer: 16 * 1024 * 1024,
    });
    for (const line of stdout.split("\n")) {
      const [name, archive] = line.trim().split(/\s+/);
      if (name && archive && path.basename(archive) === file) return { name, archive };
    }
    return `scripts/build-images.sh printed no ${file}`;
  }
  const cache = process.env.SM_INJECTOR_CACHE ?? path.join(os.homedir(), ".cache", "sm-injector");
  const version = packageVersion();
  const archive = path.join(cache, "images", version, file);
  if (existsSync(archive)) return { name: `localhost/${repository}:${version}`, archive };
  return `the ${target} image is not built (scripts/build-images.sh writes ${archive})`;
}

/** The project image's archive, or why there is none (a reason to skip). */
export function projectImage(): Promise<ImageArchive | string> {
  return builtImage("sm-injector", "sm-injector", "sm-injector");
}

/** The example FastAPI app's image (images/app), or why there is none. */
export function appImage(): Promise<ImageArchive | string> {
  return builtImage("app", "app", "sm-injector-example-app");
}

/** The release namespace the real-node tests install the chart in. */
export const RELEASE_NS = "sm-injector";

/**
 * `helm install sm-injector` of the repository's chart with `image` (imported into the node: never
 * pulled), waiting until the webhook's Deployment is ready; the helm result.
 */
export function installChart(kubeconfigPath: string, image: ImageArchive): Promise<RunResult> {
  const [repository, tag] = [image.name.slice(0, image.name.lastIndexOf(":")), image.name.split(":").pop()];
  return runHelm(
    [
      "install",
      "sm-injector",
      CHART_DIR,
      "--namespace",
      RELEASE_NS,
      "--create-namespace",
      "--set",
      `image.repository=${repository},image.tag=${tag},image.pullPolicy=Never`,
      "--wait",
      "--timeout",
      "180s",
    ],
    { env: { KUBECONFIG: kubeconfigPath } },
  );
}
