/**
 * What the pod runner's "images" contain (test/e2e/harness/pod-runner.ts ImageConfig), shared by the
 * e2e tests and the demo:
 * - the sm-injector image: Node bound at /nodejs/bin like the distroless base of the Dockerfile, the
 *   bundle (dist/) at /app (the runtime image's WORKDIR and ENTRYPOINT), with nothing else of the repo;
 * - a Python image with pydantic-settings: this machine's interpreter bound at /opt/python and its
 *   site-packages at /opt/python-site (bind mounts, so a non-root container user can reach them even
 *   when the interpreter lives under a private home such as /root/.pyenv).
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { shippedEntrypoint } from "../../../scripts/build.mjs";
import { REPO_ROOT } from "./controlplane.ts";
import type { ImageConfig } from "./pod-runner.ts";

const NODE_DIR = path.dirname(process.execPath);
export const NODE_BIND = { hostPath: NODE_DIR, containerPath: "/nodejs/bin" };
export const IMAGE_PATH = "/nodejs/bin:/usr/local/bin:/usr/bin:/bin";

/**
 * The runtime image of the Dockerfile: ENTRYPOINT node [--snapshot-blob /app/fetch.snapshot.blob]
 * /app/sm-injector.mjs (as scripts/build.mjs's shippedEntrypoint decides for the built dist/), USER
 * 65532 (nonroot).
 */
export function sminjectorImage(): ImageConfig {
  return {
    entrypoint: shippedEntrypoint(path.join(REPO_ROOT, "dist"), {
      inImage: { node: "/nodejs/bin/node", appDir: "/app" },
    }),
    cmd: ["help"],
    env: { PATH: IMAGE_PATH, NODE_ENV: "production" },
    workingDir: "/app",
    user: 65532,
    group: 65532,
    home: "/home/nonroot",
    binds: [NODE_BIND, { hostPath: path.join(REPO_ROOT, "dist"), containerPath: "/app" }],
  };
}

/** The container path of the Python interpreter in pythonImage(). */
export const PYTHON_IN_IMAGE = "/opt/python/bin/python3";

/**
 * A Python image with pydantic-settings, or why there is none here (python3 without
 * pydantic-settings: `pip install -r test/requirements.txt`).
 */
export function pythonImage(
  extra: { path?: string; binds?: ImageConfig["binds"] } = {},
): ImageConfig | string {
  const r = spawnSync(
    "python3",
    [
      "-c",
      "import sys, os, pydantic_settings; print(sys.base_prefix); print(os.path.dirname(os.path.dirname(pydantic_settings.__file__)))",
    ],
    { encoding: "utf8" },
  );
  if (r.error) return `python3 is not available (${r.error.message})`;
  if (r.status !== 0)
    return `python3 with pydantic-settings is not available (pip install -r test/requirements.txt): ${r.stderr.trim().split("\n").pop()}`;
  const [prefix, site] = r.stdout.trim().split("\n");
  return {
    env: {
      PATH: [extra.path, "/opt/python/bin:/usr/bin:/bin"].filter(Boolean).join(":"),
      PYTHONPATH: "/opt/python-site",
    },
    binds: [
      { hostPath: prefix as string, containerPath: "/opt/python" },
      { hostPath: site as string, containerPath: "/opt/python-site" },
      ...(extra.binds ?? []),
    ],
  };
}
