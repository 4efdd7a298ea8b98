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
import { REPO_ROOT } from "./controlplane.ts";

const execFileAsync = promisify(execFile);
const BUILD_IMAGES = path.join(REPO_ROOT, "scripts", "build-images.sh");
const ARCHIVE = "sm-injector-amd64.oci.tar";

export interface ImageArchive {
  /** The image reference the archive names (what pods must use). */
  name: string;
  archive: string;
}

function packageVersion(): string {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")).version;
}

/** The project image's archive, or why there is none (a reason to skip). */
export async function projectImage(): Promise<ImageArchive | string> {
  if (existsSync(BUILD_IMAGES)) {
    const { stdout } = await execFileAsync("bash", [BUILD_IMAGES, "sm-injector"], {
      maxBuffer: 16 * 1024 * 1024,
    });
    for (const line of stdout.split("\n")) {
      const [name, archive] = line.trim().split(/\s+/);
      if (name && archive && path.basename(archive) === ARCHIVE) return { name, archive };
    }
    return `scripts/build-images.sh printed no ${ARCHIVE}`;
  }
  const cache = process.env.SM_INJECTOR_CACHE ?? path.join(os.homedir(), ".cache", "sm-injector");
  const version = packageVersion();
  const archive = path.join(cache, "images", version, ARCHIVE);
  if (existsSync(archive)) return { name: `localhost/sm-injector:${version}`, archive };
  return `the project image is not built (scripts/build-images.sh writes ${archive})`;
}
