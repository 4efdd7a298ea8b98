// The test bed's tool binaries (helm, kube-apiserver, etcd), built once from Go modules by
// scripts/build-binaries.sh and cached; the same bin directory the control-plane harness uses.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import { ensureBinaries, REPO_ROOT } from "../e2e/harness/controlplane.ts";

const execFileAsync = promisify(execFile);

export { REPO_ROOT };
export const CHART_DIR = path.join(REPO_ROOT, "charts", "sm-injector");

/** The bin directory: $SM_INJECTOR_BIN_DIR, else scripts/build-binaries.sh (cached after the first build). */
export async function binDir(): Promise<string> {
  return process.env.SM_INJECTOR_BIN_DIR ?? (await ensureBinaries());
}

/** Absolute path of the pinned helm binary. */
export async function helmPath(): Promise<string> {
  const helm = path.join(await binDir(), "helm");
  if (!existsSync(helm))
    throw new Error(`helm not found in ${path.dirname(helm)}; run scripts/build-binaries.sh`);
  return helm;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with `args`; never throws for a non-zero exit (look at `code`). */
export async function runHelm(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const helm = await helmPath();
  try {
    const { stdout, stderr } = await execFileAsync(helm, args, {
      maxBuffer: 64 * 1024 * 1024,
      env: {
        ...process.env,
        // Keep helm away from the user's own config, cache and repositories.
        HELM_CONFIG_HOME: path.join(REPO_ROOT, ".tmp", "helm", "config"),
        HELM_CACHE_HOME: path.join(REPO_ROOT, ".tmp", "helm", "cache"),
        HELM_DATA_HOME: path.join(REPO_ROOT, ".tmp", "helm", "data"),
        ...opts.env,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== "number") throw err;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? e.message };
  }
}

/**
 * `helm template <release> charts/sm-injector -n <namespace> [--set k=v ...] [extra args]`; throws
 * with helm's stderr when it fails. Returns the YAML stream.
 */
export async function helmTemplate(
  opts: {
    release?: string;
    namespace?: string;
    set?: Record<string, string | number | boolean>;
    args?: string[];
  } = {},
): Promise<string> {
  const args = [
    "template",
    opts.release ?? "sm-injector",
    CHART_DIR,
    "--namespace",
    opts.namespace ?? "sm-injector",
    ...Object.entries(opts.set ?? {}).flatMap(([k, v]) => ["--set", `${k}=${v}`]),
    ...(opts.args ?? []),
  ];
  const r = await runHelm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}`);
  return r.stdout;
}

/** A Kubernetes object as rendered (loosely typed: tests dig into it). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
  [field: string]: any;
}

/** Parses a multi-document YAML stream into objects (empty documents dropped). */
export function parseManifests(yaml: string): K8sObject[] {
  return parseAllDocuments(yaml)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`invalid YAML from helm: ${d.errors[0]?.message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null && typeof o === "object" && typeof o.kind === "string");
}

/** `helm template` of the chart, parsed. */
export async function renderChart(
  set: Record<string, string | number | boolean> = {},
  opts: { release?: string; namespace?: string; args?: string[] } = {},
): Promise<K8sObject[]> {
  return parseManifests(await helmTemplate({ ...opts, set }));
}
