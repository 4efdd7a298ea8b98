/**
 * `npm run demo`: the whole flow on this machine, without an AWS account or a cluster.
 *
 *  1. the test bed's binaries (kube-apiserver, etcd, helm; built from Go modules once, then cached);
 *  2. a control plane (etcd + kube-apiserver), moto's server (Secrets Manager + STS) and the real
 *     `sm-injector webhook`, registered with the chart's MutatingWebhookConfiguration;
 *  3. the example secrets, stored in moto with the real AWS SDK (random values, never printed);
 *  4. an example from examples/ applied as is, plus one setting: AWS_ENDPOINT_URL → moto;
 *  5. the Deployment's pod created through the API server (as its ReplicaSet would be), mutated by
 *     the webhook; what changed;
 *  6. the pod as stored, run by the test bed's pod runner: the injected init container is the real
 *     `sm-injector fetch`, with a TokenRequest token, doing IRSA through moto's STS;
 *  7. the app container: a stand-in for its program (scripts/demo/app-view.py) that loads pydantic-settings
 *     the way a FastAPI app does and reports what it sees, masked; checked against what was stored;
 *  and a final check that no secret value is in the stored pod, the webhook's log or the init
 *  container's output. Everything is removed on exit and on Ctrl-C.
 *
 * Options: --example FILE (default examples/fastapi-env-file.yaml), --keep (stay up until Ctrl-C,
 * with a kubeconfig to look around), --help.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type KubernetesObject,
  KubernetesObjectApi,
  type V1Container,
  type V1Pod,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { RESTART_ON_ROTATION_ANNOTATION } from "../../src/contract/annotations.ts";
import { createDeploymentPod } from "../../test/e2e/harness/controllers.ts";
import { ensureBinaries, REPO_ROOT, readPinnedVersions } from "../../test/e2e/harness/controlplane.ts";
import {
  apiError,
  DEFAULT_REGION,
  type E2E,
  INIT_CONTAINER,
  INIT_IMAGE,
  INJECT_LABEL,
  startE2E,
} from "../../test/e2e/harness/env.ts";
import { PYTHON_IN_IMAGE, pythonImage, sminjectorImage } from "../../test/e2e/harness/images.ts";
import {
  type ContainerRun,
  type ImageConfig,
  type PodRun,
  podRunnerUnsupportedReason,
  reportStatus,
  runPod,
} from "../../test/e2e/harness/pod-runner.ts";
import { leaveSignalsToCaller } from "../../test/e2e/harness/process.ts";
import { CLI } from "../../test/helpers/webhook.ts";
import { PINNED_NODE_VERSION, refuseUnpinnedNode } from "../pinned-node.mjs";
import { maskedSecrets, rotated, type SeededSecret, secretsFor } from "./secrets.ts";

const USAGE = `Usage: npm run demo [-- --example FILE] [-- --keep]

Runs the whole sm-injector flow on this machine: a local control plane (kube-apiserver + etcd),
moto's Secrets Manager + STS, the webhook, an example Deployment, its init container and app.

  --example FILE   a file from examples/ (default examples/fastapi-env-file.yaml)
  --keep           stay up at the end (prints a kubeconfig) until Ctrl-C
  -h, --help       this help

Needs: Node.js ${PINNED_NODE_VERSION} (scripts/versions.env; bash scripts/install-node.sh), Python 3 with moto[server] and pydantic-settings (pip install -r test/requirements.txt),
Go on the first run (builds kube-apiserver, etcd and helm from Go modules, then caches them). Running
the pods (steps 6 to 8) needs Linux and root, like a kubelet: mount namespaces, bind mounts, setpriv.`;

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
let env: E2E | undefined;
let podRun: PodRun | undefined;
/** The cleanups of every pod run (registered before the run creates anything: Ctrl-C may come mid-run). */
const podCleanups: Array<() => Promise<void>> = [];
const trackCleanup = (fn: () => Promise<void>) => podCleanups.push(fn);
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
    say(`\n${yellow(`${signal}: stopping`)} the control plane, moto and the webhook… (again to force)\n`);
    // An orderly stop (waits for every process to exit), bounded; then the exit hooks finish the job.
    const force = setTimeout(() => process.exit(SIGNAL_EXIT[signal]), 15_000);
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
    for (const fn of podCleanups) await fn().catch(() => {});
    await env?.stop();
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

interface AppReport {
  argv: string[];
  uid: number;
  gid: number;
  groups: number[];
  environment: Record<string, { sha256: string; length: number }>;
  settings?: {
    source: Record<string, string>;
    fields?: Record<string, { sha256: string; length: number }>;
    skipped?: string;
  } | null;
  settingsError?: string;
}

// Variables a shell or the runtime sets on its own: not from the pod spec, not from the env file.
const RUNTIME_ENV = new Set(["PWD", "OLDPWD", "SHLVL", "_", "LC_CTYPE"]);

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
  // The sm-injector "image" below runs the node running this demo: the image's Node is the pinned one.
  const refusal = refuseUnpinnedNode("The demo");
  if (refusal) throw new DemoError(refusal);
  const exampleFile = path.resolve(REPO_ROOT, opts.example as string);
  if (!existsSync(exampleFile))
    throw new DemoError(`${opts.example} does not exist (the examples are in examples/)`);
  const { docs, workload } = readExample(exampleFile);
  if (!existsSync(CLI)) throw new DemoError(`${CLI} is missing: run \`npm run build\` (npm run demo does)`);
  if (spawnSync("moto_server", ["--help"], { stdio: "ignore" }).error)
    throw new DemoError("moto_server is not on PATH: pip install -r test/requirements.txt");
  const cannotRun = podRunnerUnsupportedReason();
  const app = pythonImage({
    path: "/opt/sm-injector-demo/bin",
    binds: [{ hostPath: path.join(scratch, "bin"), containerPath: "/opt/sm-injector-demo/bin" }],
  });

  if (!cannotRun && typeof app === "string") throw new DemoError(app);

  const t0 = performance.now();
  say(
    `${bold("sm-injector demo")}: ${path.relative(REPO_ROOT, exampleFile)} on a local control plane, with moto as Secrets Manager and STS.\n`,
  );

  // 1. Binaries.
  const pins = readPinnedVersions();
  step(
    1,
    `Test bed: kube-apiserver ${pins.KUBERNETES_VERSION}, etcd ${pins.ETCD_VERSION}, helm ${pins.HELM_VERSION}`,
  );
  line(
    dim("built from Go modules on the first run (about 10 minutes on 2 cores; progress below), then cached"),
  );
  const binDir = await ensureBinaries();
  line(`${OK} ${binDir} ${took()}`);

  // 2. Control plane, moto, webhook.
  step(2, "Control plane, moto and the webhook");
  const defaultRegion = DEFAULT_REGION; // the webhook's --default-region in the test bed
  env = await startE2E({ moto: true });
  const moto = env.moto;
  if (!moto) throw new DemoError("moto did not start");
  const config = await env.admission.readMutatingWebhookConfiguration({
    name: env.webhookConfiguration.name,
  });
  table([
    ["kube-apiserver", env.cp.apiServerUrl, dim(`(etcd ${env.cp.etcdUrl})`)],
    ["moto", moto.endpoint, dim("(Secrets Manager + STS)")],
    [
      "webhook",
      `${env.webhook.url}/mutate`,
      dim(`(sm-injector ${path.relative(REPO_ROOT, CLI)} webhook, TLS)`),
    ],
  ]);
  for (const w of config.webhooks ?? [])
    line(
      `MutatingWebhookConfiguration ${bold(config.metadata?.name ?? "")} from the ${env.webhookConfiguration.source === "chart" ? "Helm chart" : "fixture"}: ` +
        `${w.name}, failurePolicy ${w.failurePolicy}, timeout ${w.timeoutSeconds} s, reinvocation ${w.reinvocationPolicy}, ` +
        `only pods labelled ${
          Object.entries(w.objectSelector?.matchLabels ?? {})
            .map(([k, v]) => `${k}=${v}`)
            .join(",") || JSON.stringify(w.objectSelector?.matchExpressions)
        }`,
    );
  line(`${OK} ready ${took()}`);

  // 3. Secrets.
  const regions = regionsOf(workload.template, defaultRegion);
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

  // 4. Apply the example.
  step(4, `kubectl apply -f ${path.relative(REPO_ROOT, exampleFile)}`);
  const ns = workload.namespace;
  const accounts: Record<string, Record<string, string>> = {};
  for (const d of docs)
    if (d.kind === "ServiceAccount") {
      const m = d.metadata as { name: string; annotations?: Record<string, string> };
      accounts[m.name] = m.annotations ?? {};
    }
  const sa = workload.template.spec?.serviceAccountName ?? "default";
  let saNote = "";
  if (sa !== "default" && !accounts[sa]) {
    // What `eksctl create iamserviceaccount` would have made.
    accounts[sa] = { "eks.amazonaws.com/role-arn": `arn:aws:iam::123456789012:role/${sa}` };
    saNote = " (not in the example: created as `eksctl create iamserviceaccount` would, for IRSA)";
  }
  await env.createNamespace(ns, { serviceAccounts: accounts });
  line(`namespace/${ns} created`);
  for (const [name, ann] of Object.entries(accounts))
    line(
      `serviceaccount/${name} created${ann["eks.amazonaws.com/role-arn"] ? ` → IAM role ${ann["eks.amazonaws.com/role-arn"]}` : ""}${name === sa ? saNote : ""}`,
    );
  // The one change: the AWS SDK in the pod talks to moto (on EKS there is no such setting).
  // (The template is the workload document's own: the change is in what is applied.)
  const template = workload.template;
  for (const c of template.spec?.containers ?? []) {
    c.env = [...(c.env ?? []), { name: "AWS_ENDPOINT_URL", value: moto.endpoint }];
  }
  const objects = KubernetesObjectApi.makeApiClient(env.cp.kubeConfig);
  for (const d of docs) {
    if (d.kind === "ServiceAccount" || d.kind === "Namespace" || (d.kind === "Pod" && d === workload.doc))
      continue;
    const kind = `${String(d.kind).toLowerCase()}/${(d.metadata as { name?: string })?.name}`;
    try {
      await objects.create(d as KubernetesObject);
      line(`${kind} created`);
    } catch (e) {
      if (d === workload.doc) throw e;
      line(dim(`${kind} not created (${apiError(e).message}); not needed to run the pod`));
    }
  }
  line(
    `${yellow("demo change")}: ${(template.spec?.containers ?? []).map((c) => c.name).join(", ")} get AWS_ENDPOINT_URL=${moto.endpoint} ${dim("(points the AWS SDK at moto; the webhook hands it to the init container)")}`,
  );
  line(`${OK} ${took()}`);

  // 5. The pod, through the API server and the webhook.
  step(5, `A pod of ${workload.kind.toLowerCase()}/${workload.name}, created through the API server`);
  line(
    dim(
      `no controller-manager runs here: the demo creates ${workload.kind === "Deployment" ? "its ReplicaSet and the ReplicaSet's pod" : "the pod from the template"}, as the controllers would`,
    ),
  );
  const logBefore = env.webhookLogEntries().length;
  let pod: V1Pod;
  if (workload.kind === "Deployment") {
    // Its ReplicaSet, then the ReplicaSet's pod (owned by it, so the rotation controller finds the
    // Deployment to restart).
    const deployment = await env.apps.readNamespacedDeployment({ namespace: ns, name: workload.name });
    ({ pod } = await createDeploymentPod(env.apps, env.core, deployment));
  } else {
    const created = await env.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { ...template.metadata, generateName: `${workload.name}-demo-`, namespace: ns },
        spec: template.spec,
      } as V1Pod,
    });
    pod = await env.core.readNamespacedPod({ namespace: ns, name: created.metadata?.name as string });
  }
  const podName = pod.metadata?.name ?? "";
  line(`pod/${podName} created`);
  // The webhook's audit lines for it (the pod has no name yet when it is admitted: generateName).
  const audits = env
    .webhookLogEntries()
    .slice(logBefore)
    .filter((e) => e.msg === "admission" && e.namespace === ns);
  for (const [i, a] of audits.entries())
    line(
      `${i === 0 ? "the API server called the webhook" : "then again (reinvocationPolicy IfNeeded)"}: ` +
        `${a.result}${a.reason !== a.result ? ` (${a.reason})` : ""} in ${a.ms} ms${i === 0 && a.identity ? `; identity: ${IDENTITY[String(a.identity)] ?? a.identity}` : ""}`,
    );
  const injected = pod.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER);
  if (!injected) throw new DemoError("the stored pod has no init container: the webhook did not inject it");
  for (const l of describeMutation(template, pod)) line(l);
  line(`${OK} no secret in the pod spec: only names and references ${took()}`);

  if (cannotRun) {
    step(6, "Run the pod");
    line(`${yellow("skipped")}: ${cannotRun}.`);
    line("Steps 6 to 8 run the init container and the app like a kubelet; on Linux run the demo as root");
    line("(e.g. `sudo -E npm run demo`, or inside a Linux VM or container).");
    return finish(opts.keep, t0, true);
  }
  if (typeof app === "string") throw new DemoError(app);

  // 6. The init container.
  step(6, `Init container ${INIT_CONTAINER}: the real \`sm-injector fetch\`, run from the stored pod`);
  writeStandIns(pod.spec?.containers ?? []);
  const images: Record<string, ImageConfig> = { [INIT_IMAGE]: sminjectorImage() };
  for (const c of pod.spec?.containers ?? []) if (c.image) images[c.image] = app;
  podRun = await runPod({
    core: env.core,
    pod,
    images,
    scratchRoot: scratch,
    timeoutMs: 90_000,
    onCleanup: trackCleanup,
  });
  const init = showInit(pod, podRun);
  // The kubelet's part: the pod's status, with the init container's termination message.
  await reportStatus(env.core, pod, podRun);

  // 7. The app.
  step(7, "The app, started after the init container");
  line(
    dim(
      "its program is a stand-in (scripts/demo/app-view.py) that loads pydantic-settings like a FastAPI app and reports",
    ),
  );
  line(dim("a SHA-256 of each value, compared here with what was stored; values are shown masked"));
  showApp(pod, podRun, maskedSecrets(secrets));

  // 8. Rotation.
  const optedIn = template.metadata?.annotations?.[RESTART_ON_ROTATION_ANNOTATION] === "true";
  const places: Array<[string, string]> = [
    ["the stored pod", JSON.stringify(pod)],
    ["the init container's output", init.stdout.toString("utf8") + init.stderr.toString("utf8")],
  ];
  if (!optedIn || workload.kind !== "Deployment") {
    step(8, "Rotation");
    line(
      dim(
        `skipped: ${!optedIn ? `the example does not annotate ${RESTART_ON_ROTATION_ANNOTATION}: "true"` : `${workload.kind}s are not rolled by \`sm-injector rotation\``}`,
      ),
    );
  } else {
    await podRun.cleanup();
    places.push(...(await showRotation({ ns, workload, pod, images, secrets, regions, moto })));
  }

  // The promise: no value anywhere but in the memory-backed file and the app.
  places.push(["the webhook's log", env.webhookLog()], ["this demo's own output", printed]);
  const leaks = secrets
    .flatMap((s) => s.parts)
    .flatMap((v) => places.filter(([, text]) => text.includes(v)).map(([w]) => w));
  if (leaks.length > 0) throw new DemoError(`a secret value appears in ${[...new Set(leaks)].join(", ")}`);
  say(`\n${OK} No secret value in ${places.map(([w]) => w).join(", ")}.\n`);
  return finish(opts.keep, t0, false);
}

/** Step 6's report: who ran the init container, what it fetched and wrote. */
function showInit(pod: V1Pod, run: PodRun): ContainerRun {
  const init = run.initContainers.find((c) => c.name === INIT_CONTAINER);
  if (!init) throw new DemoError("the init container did not run");
  const initLog = init.stdout
    .toString("utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  line(
    `ran as uid ${init.uid} gid ${init.gid}, with a TokenRequest token for sts.amazonaws.com bound to pod/${pod.metadata?.name}: ` +
      `${init.exitCode === 0 ? green("exit 0") : red(`exit ${init.exitCode ?? init.signal}`)} in ${formatMs(init.durationMs)}`,
  );
  for (const l of initLog.filter((e) => e.msg === "fetched secret"))
    line(
      `${OK} fetched ${bold(String(l.secretId))} version ${String(l.versionId).slice(0, 8)}… ${(l.versionStages as string[] | undefined)?.join(",") ?? ""} ` +
        dim(
          `(${l.bytes} bytes, ${l.api}${l.attempts === 1 ? "" : ` after ${l.attempts} attempts`}, ${l.durationMs} ms)`,
        ),
    );
  const written = initLog.find((e) => e.msg === "secrets written");
  if (written) {
    const out = written.output as string | string[] | undefined;
    line(
      `${OK} wrote ${written.variables} variables to ${Array.isArray(out) ? out.join(", ") : out} (${written.format}) ` +
        dim(
          `(${written.apiCalls} API call${written.apiCalls === 1 ? "" : "s"}, ${written.sinceProcessStartMs} ms from process start)`,
        ),
    );
    const dir = run.volumeDir("sm-injector-secrets");
    for (const f of listFiles(dir)) {
      const st = statSync(path.join(dir, f));
      line(
        dim(
          `    ${f}: mode 0${(st.mode & 0o777).toString(8)}, owner ${st.uid}:${st.gid}, on a tmpfs (emptyDir medium Memory)`,
        ),
      );
    }
  }
  if (init.exitCode !== 0) {
    say(init.stderr.toString("utf8"));
    throw new DemoError("the init container failed (its message is above); the app would not start");
  }
  return init;
}

/** Step 7's report: what each app container saw, masked, checked against `known` (SHA-256 → label). */
function showApp(pod: V1Pod, run: PodRun, known: Map<string, string>): void {
  let seen = 0;
  let wrong = 0;
  for (const c of run.containers) {
    const spec = pod.spec?.containers.find((x) => x.name === c.name) as V1Container;
    if (c.exitCode !== 0) {
      line(
        `${BAD} container ${c.name}: exit ${c.exitCode ?? c.signal}: ${c.stderr.toString("utf8").trim().split("\n").pop()}`,
      );
      wrong++;
      continue;
    }
    const report = JSON.parse(c.stdout.toString("utf8").trim().split("\n").pop() ?? "{}") as AppReport;
    line(
      `container ${bold(c.name)} ran ${bold(`\`${[report.argv[0], ...report.argv.slice(1)].join(" ")}\``)} as uid ${report.uid}` +
        `${spec.command?.[0] === "/bin/sh" ? " through the command wrap (/bin/sh sources the env file, then exec)" : ""}`,
    );
    const rowsOut: string[][] = [];
    const flush = () => table(rowsOut.splice(0));
    const check = (label: string, fp: { sha256: string; length: number }) => {
      const match = known.get(fp.sha256);
      if (match) seen++;
      else wrong++;
      rowsOut.push([
        `  ${label}`,
        "••••••••",
        dim(`${fp.length} chars`),
        match ? `${OK} = ${match}` : `${BAD} not a stored value`,
      ]);
    };
    if (report.settings?.fields) {
      const source = Object.entries(report.settings.source).map(([k, v]) => `${k}=${v}`);
      line(`  Settings(${source.join(", ")}):`);
      for (const [k, fp] of Object.entries(report.settings.fields)) check(`  .${k}`, fp);
    } else if (report.settings?.skipped) {
      line(dim(`  Settings: ${report.settings.skipped}`));
    } else if (report.settingsError) {
      line(`  Settings: ${BAD} ${report.settingsError}`);
      wrong++;
    }
    // Environment variables the runtime did not give it: the ones the command wrap sourced.
    const injectedEnv = Object.entries(report.environment).filter(
      ([k]) => !(k in c.env) && !RUNTIME_ENV.has(k),
    );
    if (injectedEnv.length > 0) {
      flush();
      line("  environment variables it did not get from the pod spec (sourced from the env file):");
      for (const [k, fp] of injectedEnv) check(`  $${k}`, fp);
    }
    flush();
  }
  if (seen === 0 || wrong > 0)
    throw new DemoError(`the app saw ${seen} stored value(s) and ${wrong} problem(s) (above)`);
}

/**
 * Step 8: a new version of one secret the pod reads; `sm-injector rotation --once` (the bundle)
 * stamps the Deployment; the rollout's new pod (created as the controllers would) fetches the new
 * version. Returns the texts to check for leaks.
 */
async function showRotation(ctx: {
  ns: string;
  workload: Workload;
  pod: V1Pod;
  images: Record<string, ImageConfig>;
  secrets: SeededSecret[];
  regions: string[];
  moto: NonNullable<E2E["moto"]>;
}): Promise<Array<[string, string]>> {
  const e = env as E2E;
  const init = ctx.pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER);
  const spec = JSON.parse(init?.env?.find((v) => v.name === "SM_INJECTOR_SPEC")?.value ?? "{}") as {
    entries: Array<{
      source?: { secretId: string };
      parts?: Array<string | { source: { secretId: string } }>;
    }>;
  };
  // A secret read through a template first: rotating it is the point of a template.
  const templated = new Set(
    spec.entries.flatMap((x) =>
      (x.parts ?? []).flatMap((p) => (typeof p === "string" ? [] : [p.source.secretId])),
    ),
  );
  const referenced = new Set([
    ...spec.entries.flatMap((x) => (x.source ? [x.source.secretId] : [])),
    ...templated,
  ]);
  const byTemplate = ctx.secrets.findIndex((s) => templated.has(s.name));
  const index =
    byTemplate >= 0
      ? byTemplate
      : ctx.secrets.findIndex((s) => referenced.has(s.name) && s.parts.length === 1);
  const at = index >= 0 ? index : ctx.secrets.findIndex((s) => referenced.has(s.name));
  const old = ctx.secrets[at] as SeededSecret;
  step(8, `Rotation: ${old.name} gets a new version`);
  const fresh = rotated(old);
  ctx.secrets.push(fresh); // its values are checked for leaks too
  let versionId = "";
  for (const region of ctx.regions)
    versionId = (await ctx.moto.putSecretValue(old.name, fresh.value, undefined, { region })).versionId;
  line(
    `PutSecretValue ${bold(old.name)}: version ${versionId.slice(0, 8)}… is AWSCURRENT now (the old one AWSPREVIOUS)`,
  );

  const rotation = spawnSync(
    process.execPath,
    [CLI, "rotation", "--once", "--kubeconfig", e.cp.kubeconfigPath, "--namespace", ctx.ns],
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
  const logs = rotation.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const restart = logs.find((l) => l.msg === "restarting: a secret it reads has a new version");
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
  const deployment = await e.apps.readNamespacedDeployment({ namespace: ctx.ns, name: ctx.workload.name });
  const stamped = deployment.spec?.template.metadata?.annotations ?? {};
  line(
    `${OK} its pod template now has rotation.sm-injector.io/restarted-at: ${stamped["rotation.sm-injector.io/restarted-at"]} ` +
      dim("(as `kubectl rollout restart` does: the Deployment's strategy paces the rollout)"),
  );

  // The rollout's first new pod, as the controllers would create it, run like before.
  const { pod: next } = await createDeploymentPod(e.apps, e.core, deployment, "6f4b9c2d1");
  line(`the rollout's new pod/${next.metadata?.name} (created as the controllers would), run:`);
  podRun = await runPod({
    core: e.core,
    pod: next,
    images: ctx.images,
    scratchRoot: scratch,
    timeoutMs: 90_000,
  });
  const nextInit = showInit(next, podRun);
  const current = ctx.secrets.filter((s) => s !== old);
  showApp(next, podRun, maskedSecrets(current));
  return [
    ["the rotation controller's output", rotation.stdout + rotation.stderr],
    ["the new pod", JSON.stringify(next)],
    ["its init container's output", nextInit.stdout.toString("utf8") + nextInit.stderr.toString("utf8")],
  ];
}

/** One executable per app command name (uvicorn, celery, node...) that runs scripts/demo/app-view.py. */
function writeStandIns(containers: V1Container[]): void {
  const bin = path.join(scratch, "bin");
  mkdirSync(bin, { recursive: true });
  chmodSync(bin, 0o755);
  copyFileSync(path.join(REPO_ROOT, "scripts", "demo", "app-view.py"), path.join(bin, "app-view.py"));
  chmodSync(path.join(bin, "app-view.py"), 0o644);
  for (const c of containers) {
    // The program the app starts: after the command wrap, it is the wrapped command's first word.
    const wrapped = c.command?.[0] === "/bin/sh";
    // The wrap is [/bin/sh, -c, SCRIPT, ...the original command].
    const program = wrapped ? c.command?.[3] : c.command?.[0];
    if (!program) continue;
    const file = path.join(bin, path.basename(program));
    writeFileSync(
      file,
      `#!/bin/sh\nexec ${PYTHON_IN_IMAGE} /opt/sm-injector-demo/bin/app-view.py "$0" "$@"\n`,
    );
    chmodSync(file, 0o755);
  }
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).sort();
}

async function finish(keep: boolean | undefined, t0: number, partial: boolean): Promise<number> {
  say(`\n${bold(partial ? "Done up to the mutation" : "Done")} in ${formatMs(performance.now() - t0)}.\n`);
  if (keep && env) {
    const kubeconfig = path.join(scratch, "kubeconfig");
    copyFileSync(env.cp.kubeconfigPath, kubeconfig);
    say(
      `\nStill running (--keep). Look around, then press Ctrl-C:\n  export KUBECONFIG=${kubeconfig}\n  kubectl get pods -A; kubectl get mutatingwebhookconfigurations -o yaml\n`,
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
