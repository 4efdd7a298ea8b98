/**
 * `npm run demo`: the whole flow on this machine, without an AWS account: on a real one-node cluster.
 *
 *  1. the binaries (kube-apiserver, etcd, kubelet, controllers, containerd, helm; built from Go modules
 *     once, then cached) and the images (the project's, the stand-in, the example app; built offline);
 *  2. the real node (test/e2e/harness/real-node.ts), the images imported into its containerd, moto's
 *     server (Secrets Manager + STS) on the pods' gateway, and the chart installed with helm;
 *  3. the example secrets, stored in moto with the real AWS SDK (random values, never printed);
 *  4. an example from examples/ applied as is, but for AWS_ENDPOINT_URL → moto and, for each image the
 *     node does not hold, the example app image (uvicorn app.main:app) or the stand-in (scripts/demo/standin.ts);
 *  5. the workload rolled out by the real controllers, its pods mutated by the webhook; what changed;
 *  6. the injected init container (the project image) run by the kubelet: IRSA with the projected
 *     token through moto's STS, the env file on a tmpfs;
 *  7. the app: the example FastAPI app's GET /settings over the pod network (hashes, checked against
 *     what was stored; values masked); the stand-ins' argv; native sidecars running;
 *  8. rotation: a new version, `sm-injector rotation --once`, a real rolling update;
 *  and a final check that no secret value is in the stored pods, the logs or this output. Everything
 *  is removed on exit and on Ctrl-C (the node's teardown: pods, daemons, mounts, bridge, cgroups).
 *
 * Options: --example FILE (default examples/fastapi-env-file.yaml), --keep (stay up until Ctrl-C,
 * with a kubeconfig to look around), --help.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  type KubernetesObject,
  KubernetesObjectApi,
  type V1Pod,
  type V1PodSpec,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { RESTART_ON_ROTATION_ANNOTATION } from "../../src/contract/annotations.ts";
import { ensureBinaries, REPO_ROOT, readPinnedVersions } from "../../test/e2e/harness/controlplane.ts";
import { waitForFreeNode } from "../../test/e2e/harness/e2e-cluster.ts";
import { apiError, DEFAULT_REGION, INIT_CONTAINER, INJECT_LABEL } from "../../test/e2e/harness/env.ts";
import { leaveSignalsToCaller } from "../../test/e2e/harness/process.ts";
import {
  createNamespace,
  isPodReady,
  type RealNode,
  startRealNode,
  waitUntil,
} from "../../test/e2e/harness/real-node.ts";
import { POD_GATEWAY } from "../../test/e2e/harness/real-node-config.ts";
import { type Moto, startMoto } from "../../test/helpers/moto.ts";
import { CLI } from "../../test/helpers/webhook.ts";
import { PINNED_NODE_VERSION, refuseUnpinnedNode } from "../pinned-node.mjs";
import { type DemoImages, installChart, ownImages } from "./cluster.ts";
import { maskedSecrets, rotated, type SeededSecret, secretsFor } from "./secrets.ts";
import { describeSubstitution, substituteImages } from "./standin.ts";

const USAGE = `Usage: npm run demo [-- --example FILE] [-- --keep]

Runs the whole sm-injector flow on this machine: a real one-node cluster (kube-apiserver, etcd,
controllers, kubelet, containerd), moto's Secrets Manager + STS, the chart installed with helm, an
example Deployment rolled out, its init container and app, and a rotation.

  --example FILE   a file from examples/ or your own (default examples/fastapi-env-file.yaml);
                   images the node does not hold run a stand-in that prints its argv
  --keep           stay up at the end (prints a kubeconfig) until Ctrl-C
  -h, --help       this help

Needs: Linux and root (a kubelet), Node.js ${PINNED_NODE_VERSION} (scripts/versions.env; bash scripts/install-node.sh),
Python 3 with moto[server] (pip install -r test/requirements.txt), Go and the Debian packages of
scripts/build-binaries.sh on the first run (then cached).`;

// ---------------------------------------------------------------------------------------------
// Output

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code: string) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const red = paint("31");
const yellow = paint("33");
const OK = green("✓");
const BAD = red("✗");

/** Everything the demo printed, for its own leak check. */
let printed = "";
function say(text: string): void {
  printed += text;
  process.stdout.write(text);
}

const TOTAL_STEPS = 8;
let stepStarted = 0;
function step(n: number, title: string): void {
  stepStarted = performance.now();
  say(`\n${bold(`[${n}/${TOTAL_STEPS}]`)} ${bold(title)}\n`);
}
function line(text = ""): void {
  say(`      ${text}\n`);
}
function took(): string {
  return dim(`(${formatMs(performance.now() - stepStarted)})`);
}
function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}s`;
}
function table(rows: string[][], indent = "      "): void {
  const widths: number[] = [];
  for (const r of rows)
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, visible(c).length);
  for (const r of rows)
    say(
      `${indent}${r.map((c, i) => (i === r.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - visible(c).length))).join("  ")}\n`,
    );
}
// biome-ignore lint/suspicious/noControlCharactersInRegex: strips our own ANSI colour codes
const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");
class DemoError extends Error {}

// ---------------------------------------------------------------------------------------------
// Cleanup: on exit, on error and on Ctrl-C. The harness (test/e2e/harness/process.ts) kills every
// process it started (they run in their own process groups) on the same signals, after this.

const scratch = mkdtempSync(path.join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "sm-injector-demo-"));
chmodSync(scratch, 0o755);
let node: RealNode | undefined;
let nodeStarting: Promise<RealNode> | undefined;
let moto: Moto | undefined;
const RELEASE_NS = "sm-injector";
const core = () => (node as RealNode).kubeConfig.makeApiClient(CoreV1Api);
let interrupted = false;
function removeScratchSync(): void {
  rmSync(scratch, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
}
leaveSignalsToCaller();
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    if (interrupted) {
      // A second Ctrl-C: no waiting. The harness's exit hook SIGKILLs every process it started.
      removeScratchSync();
      process.exit(SIGNAL_EXIT[signal]);
    }
    interrupted = true;
    say(
      `\n${yellow(`${signal}: stopping`)} the pods, the node, the control plane and moto… (again to force)\n`,
    );
    // An orderly stop (waits for every process to exit), bounded; then the exit hooks finish the job.
    // (The node's teardown deletes its pods through the API first: seconds, more on a busy machine.)
    const force = setTimeout(() => process.exit(SIGNAL_EXIT[signal]), 90_000);
    force.unref();
    cleanup()
      .catch((e: unknown) => process.stderr.write(`cleanup: ${String(e)}\n`))
      .finally(() => process.exit(SIGNAL_EXIT[signal]));
  });
}
process.on("exit", removeScratchSync);

let cleaned: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    const t0 = performance.now();
    // The node deletes every pod through the API first (the kubelet tears sandboxes down), then
    // stops its daemons by PID and cleans the host; what it could not remove is said.
    // A node still starting is stopped once started (a failed start stops itself).
    const started = node ?? (await nodeStarting?.catch(() => undefined));
    const left = await started?.stop();
    if (left && Object.values(left).some((x) => x.length > 0))
      say(`${red("left behind")}: ${JSON.stringify(left)}\n`);
    await moto?.stop();
    removeScratchSync();
    say(`\nStopped everything and removed its files ${dim(`(${formatMs(performance.now() - t0)})`)}.\n`);
  })();
  return cleaned;
}

// ---------------------------------------------------------------------------------------------

interface Workload {
  kind: string;
  name: string;
  namespace: string;
  template: V1PodTemplateSpec;
  doc: Record<string, unknown>;
  file: string;
}

function readExample(file: string): { docs: Array<Record<string, unknown>>; workload: Workload } {
  const text = readFileSync(file, "utf8");
  const docs = parseAllDocuments(text).flatMap((d) => {
    if (d.errors.length > 0) throw new DemoError(`${file}: ${d.errors[0]?.message}`);
    const js = d.toJS() as unknown;
    return js && typeof js === "object" ? [js as Record<string, unknown>] : [];
  });
  for (const doc of docs) {
    const meta = (doc.metadata ?? {}) as { name?: string; namespace?: string };
    const spec = doc.spec as {
      template?: V1PodTemplateSpec;
      jobTemplate?: { spec?: { template?: V1PodTemplateSpec } };
    };
    const template =
      doc.kind === "Pod"
        ? ({ metadata: doc.metadata, spec: doc.spec } as V1PodTemplateSpec)
        : (spec?.template ?? spec?.jobTemplate?.spec?.template);
    if (template?.metadata?.labels?.[INJECT_LABEL] === "true")
      return {
        docs,
        workload: {
          kind: String(doc.kind),
          name: meta.name ?? "app",
          namespace: meta.namespace ?? "default",
          template,
          doc,
          file,
        },
      };
  }
  throw new DemoError(
    `${file} has no Pod or workload whose pod template has the label ${INJECT_LABEL}: "true"`,
  );
}

/** Regions the pod may read from: its region annotation, its containers' AWS_REGION, the webhook default. */
function regionsOf(template: V1PodTemplateSpec, defaultRegion: string): string[] {
  const regions = new Set([defaultRegion]);
  const annotated = template.metadata?.annotations?.["sm-injector.io/region"];
  if (annotated) regions.add(annotated);
  for (const c of template.spec?.containers ?? [])
    for (const e of c.env ?? [])
      if ((e.name === "AWS_REGION" || e.name === "AWS_DEFAULT_REGION") && e.value) regions.add(e.value);
  return [...regions];
}

/** The webhook's audit `identity` field, in words. */
const IDENTITY: Record<string, string> = {
  serviceaccount: "IRSA, from the ServiceAccount's eks.amazonaws.com/role-arn (its own projected token)",
  container: "the app container's IRSA / Pod Identity settings, copied",
  none: "none found (the init container will fail)",
};

/** The API server's ServiceAccount admission plugin adds this token volume to every pod, not us. */
const isApiServerOwn = (volume: string) => volume.startsWith("kube-api-access-");

/** The names of what the webhook added to the pod (compared with the template it was given). */
function describeMutation(before: V1PodTemplateSpec, after: V1Pod): string[] {
  const out: string[] = [];
  const names = (xs: Array<{ name: string }> | undefined) => new Set((xs ?? []).map((x) => x.name));
  const beforeInit = names(before.spec?.initContainers);
  for (const c of after.spec?.initContainers ?? []) {
    if (beforeInit.has(c.name)) continue;
    const sc = c.securityContext ?? {};
    out.push(
      `${green("+")} init container ${bold(c.name)}: ${c.image} ${(c.args ?? []).join(" ")}; uid ${sc.runAsUser ?? "image default"}, ` +
        `${sc.readOnlyRootFilesystem ? "read-only root, " : ""}${sc.capabilities?.drop?.includes("ALL") ? "no capabilities, " : ""}` +
        `cpu ${c.resources?.limits?.cpu ?? "-"} / memory ${c.resources?.limits?.memory ?? "-"}`,
    );
    const spec = c.env?.find((e) => e.name === "SM_INJECTOR_SPEC")?.value;
    if (spec) {
      const s = JSON.parse(spec) as {
        format: string;
        outputDir: string;
        fileName?: string;
        fileMode: number;
        timeoutSeconds: number;
        entries: Array<{
          kind: string;
          source: { secretId: string; region?: string };
          env?: string;
          key?: string;
          prefix?: string;
          parts?: Array<string | { source: { secretId: string }; key?: string; filter?: string }>;
        }>;
      };
      out.push(
        `    writes ${s.format === "files" ? `one file per variable in ${s.outputDir}` : `${s.outputDir}/${s.fileName}`} (${s.format}, mode 0${s.fileMode.toString(8)}), deadline ${s.timeoutSeconds} s`,
      );
      for (const e of s.entries)
        if (e.kind === "template")
          out.push(
            `    ${e.env} ← template: ${(e.parts ?? [])
              .map((p) =>
                typeof p === "string"
                  ? p
                  : `\${${p.source.secretId}${p.key ? `#${p.key}` : ""}${p.filter ? `|${p.filter}` : ""}}`,
              )
              .join("")}`,
          );
        else
          out.push(
            `    ${e.env ?? (e.prefix !== undefined ? `${e.prefix}*` : "*")} ← ${e.source.secretId}${e.key ? `#${e.key}` : ""}${e.source.region ? dim(` (${e.source.region})`) : ""}`,
          );
    }
    const identity = (c.env ?? []).filter((e) =>
      /^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE|CONTAINER_)/.test(e.name),
    );
    if (identity.length > 0)
      out.push(`    identity: ${identity.map((e) => `${e.name}=${e.value}`).join(", ")}`);
  }
  const beforeVolumes = names(before.spec?.volumes);
  for (const v of after.spec?.volumes ?? []) {
    if (beforeVolumes.has(v.name) || isApiServerOwn(v.name)) continue;
    if (v.emptyDir)
      out.push(
        `${green("+")} volume ${bold(v.name)}: emptyDir, medium ${v.emptyDir.medium ?? "disk"}, sizeLimit ${v.emptyDir.sizeLimit ?? "none"}`,
      );
    else if (v.projected)
      out.push(
        `${green("+")} volume ${bold(v.name)}: projected ServiceAccount token for ${v.projected.sources?.map((s) => s.serviceAccountToken?.audience).join(", ")}`,
      );
    else out.push(`${green("+")} volume ${bold(v.name)}`);
  }
  for (const c of after.spec?.containers ?? []) {
    const was = before.spec?.containers.find((b) => b.name === c.name);
    const changes: string[] = [];
    const mounts = names(was?.volumeMounts?.map((m) => ({ name: `${m.name}@${m.mountPath}` })));
    for (const m of c.volumeMounts ?? [])
      if (!isApiServerOwn(m.name) && !mounts.has(`${m.name}@${m.mountPath}`))
        changes.push(`mounts ${m.mountPath}${m.readOnly ? " read-only" : ""}`);
    const envs = names(was?.env);
    for (const e of c.env ?? []) if (!envs.has(e.name)) changes.push(`env ${e.name}=${e.value}`);
    if (JSON.stringify(c.command) !== JSON.stringify(was?.command))
      changes.push(`command wrapped: ${JSON.stringify(c.command)} + args ${JSON.stringify(c.args ?? [])}`);
    if (changes.length > 0) out.push(`${yellow("~")} container ${bold(c.name)}: ${changes.join("; ")}`);
  }
  const status = after.metadata?.annotations?.["sm-injector.io/status"];
  if (status) out.push(`${yellow("~")} annotation sm-injector.io/status: ${status}`);
  return out;
}

async function main(): Promise<number> {
  const { values: opts } = parseArgs({
    options: {
      example: { type: "string", short: "e", default: "examples/fastapi-env-file.yaml" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (opts.help) {
    say(`${USAGE}\n`);
    return 0;
  }
  const refusal = refuseUnpinnedNode("The demo");
  if (refusal) throw new DemoError(refusal);
  const exampleFile = path.resolve(REPO_ROOT, opts.example as string);
  if (!existsSync(exampleFile))
    throw new DemoError(`${opts.example} does not exist (the examples are in examples/)`);
  const { docs, workload } = readExample(exampleFile);
  if (!existsSync(CLI)) throw new DemoError(`${CLI} is missing: run \`npm run build\` (npm run demo does)`);
  if (spawnSync("moto_server", ["--help"], { stdio: "ignore" }).error)
    throw new DemoError("moto_server is not on PATH: pip install -r test/requirements.txt");
  if (process.platform !== "linux" || process.getuid?.() !== 0)
    throw new DemoError("the demo runs a real node (kubelet, containerd): it needs Linux and root");

  const t0 = performance.now();
  say(
    `${bold("sm-injector demo")}: ${path.relative(REPO_ROOT, exampleFile)} on a real one-node cluster, with moto as Secrets Manager and STS.\n`,
  );
  const images = await showBinaries();
  const { moto, defaultRegion } = await showCluster(images);
  const n = node as RealNode;

  const regions = regionsOf(workload.template, defaultRegion);
  const secrets = await showSecrets(moto, regions);

  // 4. Apply the example.
  const template = await applyExample(n, docs, workload, images, `http://${POD_GATEWAY}:${moto.port}`);

  // 5. The rollout.
  const pods = await showRollout(n, workload, template);
  const pod = pods[0] as V1Pod;

  // 6. The init container.
  step(6, `Init container ${INIT_CONTAINER}: the project image, run by the kubelet`);
  const places: Array<[string, string]> = [["the stored pods", JSON.stringify(pods)]];
  for (const p of pods) places.push(["the init container's log", await showInit(n, p)]);

  // 7. The app.
  step(7, "The app containers, started after the init container");
  for (const p of pods) places.push(["the containers' logs", await showApp(n, p, maskedSecrets(secrets))]);

  // 8. Rotation.
  const optedIn = template.metadata?.annotations?.[RESTART_ON_ROTATION_ANNOTATION] === "true";
  if (!optedIn || workload.kind !== "Deployment") {
    step(8, "Rotation");
    line(
      dim(
        `skipped: ${!optedIn ? `the example does not annotate ${RESTART_ON_ROTATION_ANNOTATION}: "true"` : `${workload.kind}s are not rolled by \`sm-injector rotation\``}`,
      ),
    );
  } else {
    places.push(...(await showRotation({ node: n, workload, pod, secrets, regions, moto })));
  }

  // The promise: no value anywhere but in the memory-backed file and the app.
  places.push(["the webhook's log", await webhookLog(n)], ["this demo's own output", printed]);
  const leaks = secrets
    .flatMap((s) => s.parts)
    .flatMap((v) => places.filter(([, text]) => text.includes(v)).map(([w]) => w));
  if (leaks.length > 0) throw new DemoError(`a secret value appears in ${[...new Set(leaks)].join(", ")}`);
  say(`\n${OK} No secret value in ${[...new Set(places.map(([w]) => w))].join(", ")}.\n`);
  return finish(opts.keep, t0);
}

/** Step 3: the example secrets in moto, in every region the pod may read from (values never printed). */
async function showSecrets(moto: Moto, regions: string[]): Promise<SeededSecret[]> {
  step(3, `Secrets in Secrets Manager (moto), region ${regions.join(" and ")}`);
  const secrets: SeededSecret[] = secretsFor();
  const rows: string[][] = [];
  for (const s of secrets) {
    let version = "";
    for (const region of regions) version = (await moto.createSecret(s.name, s.value, { region })).versionId;
    rows.push([s.name, dim(`version ${version.slice(0, 8)}…`), s.describe]);
  }
  table(rows);
  line(dim("values are random for this run and never printed; they contain quotes, $ and backslashes"));
  line(`${OK} stored with the AWS SDK ${took()}`);
  return secrets;
}

/** Step 1: the cluster's binaries (Go modules, Debian packages) and the images (built offline). */
async function showBinaries(): Promise<DemoImages> {
  const pins = readPinnedVersions();
  step(
    1,
    `Binaries: kube-apiserver, kubelet, controllers ${pins.KUBERNETES_VERSION}, etcd ${pins.ETCD_VERSION}, containerd ${pins.CONTAINERD_VERSION}, helm ${pins.HELM_VERSION}; images`,
  );
  line(dim("built from Go modules on the first run (progress below), then cached"));
  const binDir = await ensureBinaries(["control-plane", "node"]);
  line(`${OK} ${binDir}`);
  const images = await ownImages(scratch, (l) => line(dim(l)));
  for (const i of Object.values(images)) line(`${OK} ${i.name} ${dim(i.archive)}`);
  line(
    dim("images built offline by scripts/build-images.sh (no registry), then cached; copied for this run"),
  );
  line(`${OK} ${took()}`);
  return images;
}

/** The real node, once no other process holds it (another may take it between our look and our start). */
async function startFreeNode(): Promise<RealNode> {
  for (;;) {
    await waitForFreeNode((l) => line(yellow(l)));
    try {
      nodeStarting = startRealNode({ progress: (l) => line(dim(l)) });
      return await nodeStarting;
    } catch (e) {
      if (!/a real node is already running/.test((e as Error).message)) throw e;
    }
  }
}

/** Step 2: the real node, the images in its containerd, moto for the pods, the chart installed with helm. */
async function showCluster(images: DemoImages): Promise<{ moto: Moto; defaultRegion: string }> {
  step(2, "A real one-node cluster, moto, and the chart installed with helm");
  node = await startFreeNode();
  const n = node;
  for (const i of Object.values(images)) await n.importImage(i.archive, i.name);
  line(
    `images imported into containerd: ${Object.values(images)
      .map((i) => i.name)
      .join(", ")}`,
  );
  moto = await startMoto({ listenHost: "0.0.0.0" });
  const defaultRegion = DEFAULT_REGION;
  const installStarted = performance.now();
  await installChart(n.kubeconfigPath, images.sminjector.name, RELEASE_NS, defaultRegion);
  const hooks = await n.kubeConfig
    .makeApiClient(AdmissionregistrationV1Api)
    .listMutatingWebhookConfiguration();
  const webhookPods = (await core().listNamespacedPod({ namespace: RELEASE_NS })).items.filter(isPodReady);
  table([
    ["kube-apiserver", n.cp.apiServerUrl, dim("(etcd, kube-controller-manager, kube-scheduler)")],
    ["node", `${n.nodeName} ${n.nodeIP}`, dim("(kubelet, containerd + runc, CNI bridge)")],
    ["moto", `http://${POD_GATEWAY}:${moto.port}`, dim("(Secrets Manager + STS, on the pods' gateway)")],
    [
      "webhook",
      `deployment/sm-injector in ${RELEASE_NS}`,
      dim(`(${webhookPods.length} pods Ready, image ${images.sminjector.name})`),
    ],
  ]);
  line(`helm install sm-injector charts/sm-injector --wait: ${formatMs(performance.now() - installStarted)}`);
  for (const c of hooks.items)
    for (const w of c.webhooks ?? [])
      line(
        `MutatingWebhookConfiguration ${bold(c.metadata?.name ?? "")} from the Helm chart: ${w.name}, failurePolicy ${w.failurePolicy}, ` +
          `timeout ${w.timeoutSeconds} s, reinvocation ${w.reinvocationPolicy}, via Service ${w.clientConfig.service?.namespace}/${w.clientConfig.service?.name}`,
      );
  line(`${OK} ready ${took()}`);
  return { moto, defaultRegion };
}

/** Step 4: the example as is, but for AWS_ENDPOINT_URL → moto and images nothing can pull. */
async function applyExample(
  n: RealNode,
  docs: Array<Record<string, unknown>>,
  workload: Workload,
  images: DemoImages,
  motoForPods: string,
): Promise<V1PodTemplateSpec> {
  step(4, `kubectl apply -f ${path.relative(REPO_ROOT, workload.file)}`);
  const ns = workload.namespace;
  await createNamespace(core(), ns);
  line(`namespace/${ns} created`);
  const template = workload.template;
  const sa = template.spec?.serviceAccountName ?? "default";
  const declared = docs.some(
    (d) => d.kind === "ServiceAccount" && (d.metadata as { name?: string })?.name === sa,
  );
  if (sa !== "default" && !declared) {
    // What `eksctl create iamserviceaccount` would have made.
    await core().createNamespacedServiceAccount({
      namespace: ns,
      body: {
        metadata: {
          name: sa,
          annotations: { "eks.amazonaws.com/role-arn": `arn:aws:iam::123456789012:role/${sa}` },
        },
      },
    });
    line(
      `serviceaccount/${sa} created → IAM role arn:aws:iam::123456789012:role/${sa} (as \`eksctl create iamserviceaccount\` would, for IRSA)`,
    );
  }
  for (const c of template.spec?.containers ?? [])
    c.env = [...(c.env ?? []), { name: "AWS_ENDPOINT_URL", value: motoForPods }];
  const available = new Set(await n.images());
  const swaps = substituteImages(template.spec as V1PodSpec, {
    standin: images.standin.name,
    app: images.app.name,
    available,
  });
  const objects = KubernetesObjectApi.makeApiClient(n.kubeConfig);
  for (const d of docs) {
    if (d.kind === "Namespace") continue;
    const meta = (d.metadata ?? {}) as { name?: string; namespace?: string };
    meta.namespace ??= ns;
    d.metadata = meta;
    const kind = `${String(d.kind).toLowerCase()}/${meta.name}`;
    try {
      await objects.create(d as KubernetesObject);
      const role = (d.metadata as { annotations?: Record<string, string> }).annotations?.[
        "eks.amazonaws.com/role-arn"
      ];
      line(`${kind} created${role ? ` → IAM role ${role}` : ""}`);
    } catch (e) {
      if (d === workload.doc) throw e;
      line(dim(`${kind} not created (${apiError(e).message}); not needed to run the pod`));
    }
  }
  line(
    `${yellow("demo change")}: ${(template.spec?.containers ?? []).map((c) => c.name).join(", ")} get AWS_ENDPOINT_URL=${motoForPods} ${dim("(points the AWS SDK at moto; the webhook hands it to the init container)")}`,
  );
  for (const s of swaps) line(`${yellow("demo change")}: ${describeSubstitution(s)}`);
  line(`${OK} ${took()}`);
  return template;
}

/** The workload's pods in its namespace (by its template's labels). */
async function podsOf(workload: Workload, template: V1PodTemplateSpec): Promise<V1Pod[]> {
  const labelSelector = Object.entries(template.metadata?.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return (await core().listNamespacedPod({ namespace: workload.namespace, labelSelector })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
}

/** Why a pod cannot become Ready (an init container failed, an image is missing), if it cannot. */
function stuck(pod: V1Pod): string | undefined {
  for (const s of pod.status?.initContainerStatuses ?? []) {
    const t = s.state?.terminated ?? s.lastState?.terminated;
    if (t && t.exitCode !== 0 && s.name === INIT_CONTAINER)
      return `init container ${s.name} failed (exit ${t.exitCode}): ${t.message ?? t.reason ?? ""}`;
  }
  for (const s of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    const w = s.state?.waiting;
    if (w?.reason === "ErrImageNeverPull" || w?.reason === "CreateContainerConfigError")
      return `container ${s.name}: ${w.reason}: ${w.message ?? ""}`;
  }
  return undefined;
}

/** A controller that could not create a pod (the webhook refused it: FailedCreate) fails the demo with why. */
async function refusedCreation(namespace: string): Promise<void> {
  const events = (await core().listNamespacedEvent({ namespace })).items;
  const failed = events.find((e) => e.reason === "FailedCreate");
  if (failed)
    throw new DemoError(
      `${failed.involvedObject.kind?.toLowerCase()}/${failed.involvedObject.name} could not create its pods: ${failed.message}`,
    );
}

/**
 * Waits until `want` pods of the workload are Ready (and, with `notIn`, none of those is one of them),
 * printing each pod's time from creation (as seen here) to Ready.
 */
async function waitForReadyPods(
  workload: Workload,
  template: V1PodTemplateSpec,
  want: number,
  notIn: ReadonlySet<string> = new Set(),
): Promise<V1Pod[]> {
  const seen = new Map<string, number>();
  const reported = new Set<string>();
  let ready: V1Pod[] = [];
  await waitUntil(
    `${want} Ready pod(s) of ${workload.kind.toLowerCase()}/${workload.name}`,
    180_000,
    async () => {
      const pods = await podsOf(workload, template);
      for (const p of pods) {
        const uid = p.metadata?.uid as string;
        if (notIn.has(uid)) continue;
        if (!seen.has(uid)) seen.set(uid, performance.now());
        const why = stuck(p);
        if (why) throw new DemoError(`pod/${p.metadata?.name}: ${why}`);
        if (isPodReady(p) && !reported.has(uid)) {
          reported.add(uid);
          line(
            `pod/${p.metadata?.name} on ${p.spec?.nodeName}, IP ${p.status?.podIP}: Ready ${formatMs(performance.now() - (seen.get(uid) ?? 0))} after it appeared`,
          );
        }
      }
      if (pods.length === 0) await refusedCreation(workload.namespace);
      ready = pods.filter((p) => !notIn.has(p.metadata?.uid as string) && isPodReady(p));
      const old = pods.filter((p) => notIn.has(p.metadata?.uid as string));
      return ready.length >= want && old.length === 0;
    },
  ).catch((e: unknown) => {
    if (e instanceof DemoError) throw e;
    throw new DemoError((e as Error).message);
  });
  return ready;
}

/** Step 5: the real controllers make the pods, the API server calls the webhook, the kubelet runs them. */
async function showRollout(n: RealNode, workload: Workload, template: V1PodTemplateSpec): Promise<V1Pod[]> {
  step(5, `${workload.kind.toLowerCase()}/${workload.name} rolled out by the real controllers`);
  if (workload.kind !== "Deployment" && workload.kind !== "Pod")
    throw new DemoError(`the demo runs Deployments and Pods; ${workload.kind} is not rolled out here`);
  const want =
    workload.kind === "Deployment" ? ((workload.doc.spec as { replicas?: number }).replicas ?? 1) : 1;
  const pods = await waitForReadyPods(workload, template, want);
  const pod = pods[0] as V1Pod;
  showAdmissions(await admissionsOf(n, workload.namespace));
  if (!pod.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER))
    throw new DemoError("the stored pod has no init container: the webhook did not inject it");
  line(`what the webhook changed in pod/${pod.metadata?.name}:`);
  for (const l of describeMutation(template, pod)) line(l);
  line(`${OK} no secret in the pod spec: only names and references ${took()}`);
  return pods;
}

/** GET /settings of the example app; it has no readiness probe, so uvicorn may still be starting. */
async function getSettings(url: string): Promise<Record<string, string>> {
  let body: Record<string, string> = {};
  await waitUntil(`${url} to answer`, 30_000, async () => {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = (await res.json()) as Record<string, string>;
    return true;
  });
  return body;
}

/** The webhook's audit lines for the workload's pods, by result (a reinvocation answers "unchanged"). */
function showAdmissions(audits: Array<Record<string, unknown>>): void {
  const byResult = new Map<string, Array<Record<string, unknown>>>();
  for (const a of audits) byResult.set(String(a.result), [...(byResult.get(String(a.result)) ?? []), a]);
  for (const [result, list] of byResult) {
    const first = list[0] as Record<string, unknown>;
    line(
      `the API server called the webhook: ${result}${first.reason !== result ? ` (${first.reason})` : ""} ×${list.length}, ` +
        `in ${list.map((a) => `${a.ms} ms`).join(", ")}${first.identity ? `; identity: ${IDENTITY[String(first.identity)] ?? first.identity}` : ""}`,
    );
  }
}

/** The webhook pods' logs (JSON lines), through the API server. */
async function webhookLog(n: RealNode): Promise<string> {
  const pods = (await core().listNamespacedPod({ namespace: RELEASE_NS })).items.filter((p) =>
    p.spec?.containers.some((c) => c.image?.includes("sm-injector")),
  );
  const logs = await Promise.all(
    pods.map((p) =>
      core()
        .readNamespacedPodLog({
          namespace: RELEASE_NS,
          name: p.metadata?.name as string,
          container: p.spec?.containers[0]?.name,
        })
        .catch(() => ""),
    ),
  );
  void n;
  return logs.join("\n");
}

async function admissionsOf(n: RealNode, ns: string): Promise<Array<Record<string, unknown>>> {
  return jsonLines(await webhookLog(n)).filter((e) => e.msg === "admission" && e.namespace === ns);
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** Step 6's report for one pod: its init container's log (through the API server) and status. */
async function showInit(n: RealNode, pod: V1Pod): Promise<string> {
  const name = pod.metadata?.name as string;
  const log = await core().readNamespacedPodLog({
    namespace: pod.metadata?.namespace as string,
    name,
    container: INIT_CONTAINER,
  });
  const status = pod.status?.initContainerStatuses?.find((s) => s.name === INIT_CONTAINER);
  const t = status?.state?.terminated;
  const init = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER);
  // The kubelet's timestamps have a resolution of one second.
  const seconds =
    t?.startedAt && t.finishedAt
      ? Math.round((new Date(t.finishedAt).getTime() - new Date(t.startedAt).getTime()) / 1000)
      : undefined;
  const took = seconds === undefined ? "" : seconds < 1 ? " within a second" : ` in about ${seconds} s`;
  line(
    `pod/${name}: ${init?.image}, uid ${init?.securityContext?.runAsUser ?? "image default"}, IRSA with the kubelet's projected token: ` +
      `${t?.exitCode === 0 ? green("exit 0") : red(`exit ${t?.exitCode}`)}${took}`,
  );
  const entries = jsonLines(log);
  for (const l of entries.filter((e) => e.msg === "fetched secret"))
    line(
      `  ${OK} fetched ${bold(String(l.secretId))} version ${String(l.versionId).slice(0, 8)}… ${(l.versionStages as string[] | undefined)?.join(",") ?? ""} ` +
        dim(
          `(${l.bytes} bytes, ${l.api}${l.attempts === 1 ? "" : ` after ${l.attempts} attempts`}, ${l.durationMs} ms)`,
        ),
    );
  const written = entries.find((e) => e.msg === "secrets written");
  if (written) {
    const out = written.output as string | string[] | undefined;
    line(
      `  ${OK} wrote ${written.variables} variables to ${Array.isArray(out) ? out.join(", ") : out} (${written.format}) ` +
        dim(
          `(${written.apiCalls} API call${written.apiCalls === 1 ? "" : "s"}, ${written.sinceProcessStartMs} ms from process start)`,
        ),
    );
    const dir = path.join(
      n.paths.kubeletRoot,
      "pods",
      pod.metadata?.uid as string,
      "volumes",
      "kubernetes.io~empty-dir",
      "sm-injector-secrets",
    );
    if (existsSync(dir))
      for (const f of readdirSync(dir).sort()) {
        const st = statSync(path.join(dir, f));
        line(
          dim(
            `      ${f}: mode 0${(st.mode & 0o777).toString(8)}, owner ${st.uid}:${st.gid}, on a tmpfs (emptyDir medium Memory)`,
          ),
        );
      }
  }
  if (t?.message)
    line(dim(`  termination message (read by the rotation controller): versions, ${t.message.length} bytes`));
  return log + (t?.message ?? "");
}

/** The pod's own init containers (not sm-injector's, not sidecars): ran to exit 0; what they printed. */
async function showOtherInits(pod: V1Pod): Promise<string> {
  let texts = "";
  for (const c of pod.spec?.initContainers ?? []) {
    if (c.name === INIT_CONTAINER || c.restartPolicy === "Always") continue;
    const t = pod.status?.initContainerStatuses?.find((s) => s.name === c.name)?.state?.terminated;
    line(
      `pod/${pod.metadata?.name} init container ${bold(c.name)}: ${t?.exitCode === 0 ? green("exit 0") : red(`exit ${t?.exitCode}`)}`,
    );
    const log = await core()
      .readNamespacedPodLog({
        namespace: pod.metadata?.namespace as string,
        name: pod.metadata?.name as string,
        container: c.name,
      })
      .catch(() => "");
    texts += log;
    const standin = log.split("\n").find((l) => l.startsWith("stand-in for "));
    if (standin) line(dim(`  ${standin}`));
  }
  return texts;
}

/**
 * Step 7's report for one pod: the example app answers GET /settings over the pod network (hashes,
 * checked against `known`); the stand-ins' logs show the argv they were given; native sidecars run.
 */
async function showApp(n: RealNode, pod: V1Pod, known: Map<string, string>): Promise<string> {
  void n;
  const ns = pod.metadata?.namespace as string;
  const name = pod.metadata?.name as string;
  let texts = "";
  let seen = 0;
  let wrong = 0;
  line(
    `pod/${name} init containers, in order: ${(pod.spec?.initContainers ?? []).map((c) => `${c.name}${c.restartPolicy === "Always" ? " (native sidecar)" : ""}`).join(", ")}`,
  );
  const sidecars = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === "Always");
  texts += await showOtherInits(pod);
  for (const c of [...sidecars, ...(pod.spec?.containers ?? [])]) {
    const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
    const running = statuses.find((s) => s.name === c.name)?.state?.running !== undefined;
    const kind = sidecars.includes(c) ? "native sidecar" : "container";
    const wrapped =
      c.command?.[0] === "/bin/sh"
        ? " through the command wrap (/bin/sh sources the env file, then exec)"
        : "";
    line(`pod/${name} ${kind} ${bold(c.name)}: ${running ? green("running") : red("not running")}${wrapped}`);
    if (!running) wrong++;
    const log = await core()
      .readNamespacedPodLog({ namespace: ns, name, container: c.name })
      .catch(() => "");
    texts += log;
    const standin = log.split("\n").find((l) => l.startsWith("stand-in for "));
    if (standin) line(dim(`  ${standin}`));
    if (c.image?.includes("sm-injector-example-app")) {
      const port = c.ports?.[0]?.containerPort ?? 8000;
      const body = await getSettings(`http://${pod.status?.podIP}:${port}/settings`);
      texts += JSON.stringify(body);
      line(
        `  GET http://${pod.status?.podIP}:${port}/settings (the app's pydantic-settings, loaded from the env file):`,
      );
      const rows: string[][] = [];
      for (const [k, v] of Object.entries(body)) {
        const match = known.get(v.replace(/^sha256:/, ""));
        if (match) seen++;
        else wrong++;
        rows.push([`    .${k}`, "••••••••", match ? `${OK} = ${match}` : `${BAD} not a stored value`]);
      }
      table(rows);
    }
  }
  const hasApp = pod.spec?.containers.some((c) => c.image?.includes("sm-injector-example-app"));
  if (wrong > 0 || (hasApp && seen === 0))
    throw new DemoError(`pod/${name}: the app saw ${seen} stored value(s) and ${wrong} problem(s) (above)`);
  return texts;
}

/**
 * Step 8: a new version of one secret the pod reads; `sm-injector rotation --once` stamps the
 * Deployment; the real Deployment controller rolls it; the new pods fetch the new version.
 */
async function showRotation(ctx: {
  node: RealNode;
  workload: Workload;
  pod: V1Pod;
  secrets: SeededSecret[];
  regions: string[];
  moto: Moto;
}): Promise<Array<[string, string]>> {
  const old = secretToRotate(ctx.pod, ctx.secrets);
  step(8, `Rotation: ${old.name} gets a new version`);
  const fresh = rotated(old);
  ctx.secrets.push(fresh); // its values are checked for leaks too
  let versionId = "";
  for (const region of ctx.regions)
    versionId = (await ctx.moto.putSecretValue(old.name, fresh.value, undefined, { region })).versionId;
  line(
    `PutSecretValue ${bold(old.name)}: version ${versionId.slice(0, 8)}… is AWSCURRENT now (the old one AWSPREVIOUS)`,
  );
  const before = new Set(
    (await podsOf(ctx.workload, ctx.workload.template)).map((p) => p.metadata?.uid as string),
  );
  const rotation = spawnSync(
    process.execPath,
    [
      CLI,
      "rotation",
      "--once",
      "--kubeconfig",
      ctx.node.kubeconfigPath,
      "--namespace",
      ctx.workload.namespace,
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        AWS_ENDPOINT_URL: ctx.moto.endpoint,
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_REGION: ctx.regions.at(-1) ?? "us-east-1",
      },
      encoding: "utf8",
      timeout: 120_000,
    },
  );
  const restart = jsonLines(rotation.stdout).find(
    (l) => l.msg === "restarting: a secret it reads has a new version",
  );
  line(
    `\`sm-injector rotation --once\` ${dim("(DescribeSecret for each watched secret: versions, never values)")}:`,
  );
  if (rotation.status !== 0 || !restart)
    throw new DemoError(
      `the rotation controller did not restart the Deployment:\n${rotation.stdout}${rotation.stderr}`,
    );
  line(
    `${OK} restarting ${String(restart.kind).toLowerCase()}/${restart.name}: ${(restart.changes as string[]).join("; ")} ` +
      dim(`(stale: ${(restart.stalePods as string[]).join(", ")})`),
  );
  const deployment = await ctx.node.kubeConfig
    .makeApiClient(AppsV1Api)
    .readNamespacedDeployment({ namespace: ctx.workload.namespace, name: ctx.workload.name });
  const stamped = deployment.spec?.template.metadata?.annotations ?? {};
  line(
    `${OK} its pod template now has rotation.sm-injector.io/restarted-at: ${stamped["rotation.sm-injector.io/restarted-at"]} ` +
      dim("(as `kubectl rollout restart` does)"),
  );
  line(dim("the Deployment controller rolls it (its strategy paces the rollout); the new pods:"));
  const want = (ctx.workload.doc.spec as { replicas?: number }).replicas ?? 1;
  const next = await waitForReadyPods(ctx.workload, ctx.workload.template, want, before);
  const out: Array<[string, string]> = [
    ["the rotation controller's output", rotation.stdout + rotation.stderr],
    ["the new pods", JSON.stringify(next)],
  ];
  const current = maskedSecrets(ctx.secrets.filter((s) => s !== old));
  for (const p of next) {
    out.push(["the init container's log", await showInit(ctx.node, p)]);
    out.push(["the containers' logs", await showApp(ctx.node, p, current)]);
  }
  line(`${OK} every old pod replaced; the new ones read the new version ${took()}`);
  return out;
}

/** A secret the pod reads, one read through a template first (rotating it is the point of a template). */
function secretToRotate(pod: V1Pod, secrets: SeededSecret[]): SeededSecret {
  const init = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER);
  const spec = JSON.parse(init?.env?.find((v) => v.name === "SM_INJECTOR_SPEC")?.value ?? "{}") as {
    entries: Array<{
      source?: { secretId: string };
      parts?: Array<string | { source: { secretId: string } }>;
    }>;
  };
  const templated = new Set(
    spec.entries.flatMap((x) =>
      (x.parts ?? []).flatMap((p) => (typeof p === "string" ? [] : [p.source.secretId])),
    ),
  );
  const referenced = new Set([
    ...spec.entries.flatMap((x) => (x.source ? [x.source.secretId] : [])),
    ...templated,
  ]);
  const byTemplate = secrets.findIndex((s) => templated.has(s.name));
  const single = secrets.findIndex((s) => referenced.has(s.name) && s.parts.length === 1);
  const any = secrets.findIndex((s) => referenced.has(s.name));
  return secrets[byTemplate >= 0 ? byTemplate : single >= 0 ? single : any] as SeededSecret;
}

async function finish(keep: boolean | undefined, t0: number): Promise<number> {
  say(`\n${bold("Done")} in ${formatMs(performance.now() - t0)}.\n`);
  if (keep && node) {
    say(
      `\nStill running (--keep). Look around, then press Ctrl-C:\n  export KUBECONFIG=${node.kubeconfigPath}\n  kubectl get pods -A; kubectl get mutatingwebhookconfigurations -o yaml\n`,
    );
    await new Promise(() => {});
  }
  return 0;
}

main()
  .then(async (code) => {
    await cleanup();
    process.exitCode = code;
  })
  .catch(async (e: unknown) => {
    if (interrupted) return; // the signal handler stops everything and exits
    const message =
      e instanceof DemoError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`\n${red("demo failed")}: ${message}\n`);
    if (!(e instanceof DemoError) && (e as { body?: unknown })?.body)
      process.stderr.write(`${apiError(e).message}\n`);
    await cleanup().catch((c: unknown) => process.stderr.write(`cleanup: ${String(c)}\n`));
    process.exitCode = 1;
  });
