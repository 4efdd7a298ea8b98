// Rotation, end to end: a Deployment's pod is created through the API server (mutated by the
// webhook), run by the pod runner (the real `sm-injector fetch`, which records the versions it read
// as its termination message) and its status written as the kubelet would. Then the real
// `sm-injector rotation --once` (the bundle, against moto's DescribeSecret) must leave it alone while
// the versions are current, give the Deployment one rolling restart after a PutSecretValue, and not
// restart it again for the same versions; the stamped template must still pass the webhook.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  AppsV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1Pod,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import { decodeVersions } from "../../src/contract/fetched-versions.ts";
import { renderChart } from "../helpers/tools.ts";
import { CLI } from "../helpers/webhook.ts";
import { createDeploymentPod } from "./harness/controllers.ts";
import { apiError, INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E } from "./harness/env.ts";
import { IMAGE_PATH, NODE_BIND, sminjectorImage } from "./harness/images.ts";
import { podRunnerUnsupportedReason, reportStatus, runPod } from "./harness/pod-runner.ts";

const run = promisify(execFile);
const unsupported = podRunnerUnsupportedReason();
const NS = "erp-rotation";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
const VALUES = ["rot-db-password-v1", "rot-jwt-key-v1", "rot-jwt-key-v2", "rot-jwt-key-v3"];
const RELEASE_NS = "sm-injector";

let jwtFirst = "";
let apiPod = "";

const noop = () => {};
const env = useE2E(unsupported ? { before: noop, after: noop } : { before, after }, {
  moto: true,
  setup: async (e) => {
    await e.createNamespace(NS, {
      serviceAccounts: {
        "erp-api": { "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/erp-api" },
      },
    });
    await e.moto?.createSecret(DB, JSON.stringify({ DATABASE_URL: VALUES[0] }));
    await e.moto?.createSecret(JWT, VALUES[1] as string);
  },
});

const APP_IMAGE = "registry.example.com/erp/api:2.0.0";
const IMAGES = {
  [INIT_IMAGE]: sminjectorImage(),
  [APP_IMAGE]: { env: { PATH: IMAGE_PATH }, binds: [NODE_BIND] },
};

function template(optIn: boolean): V1PodTemplateSpec {
  return {
    metadata: {
      labels: { app: "erp-api", [INJECT_LABEL]: "true" },
      annotations: {
        "sm-injector.io/env.DATABASE_URL": `${DB}#DATABASE_URL`,
        "sm-injector.io/env.JWT_SECRET_KEY": JWT,
        ...(optIn && { "sm-injector.io/restart-on-rotation": "true" }),
      },
    },
    spec: {
      serviceAccountName: "erp-api",
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
      containers: [
        {
          name: "api",
          image: APP_IMAGE,
          command: ["node", "-e", "0"],
          env: [
            { name: "AWS_ENDPOINT_URL", value: env().moto?.endpoint },
            { name: "AWS_REGION", value: "us-east-1" },
          ],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
    },
  };
}

/** A Deployment, its ReplicaSet and one pod of it, as the controllers would have made them; run. */
async function deployAndRun(name: string, optIn: boolean): Promise<{ pod: V1Pod; deployment: V1Deployment }> {
  const { apps, core } = env();
  const tpl = template(optIn);
  const labels = { app: name };
  (tpl.metadata as { labels: Record<string, string> }).labels.app = name;
  const deployment = await apps.createNamespacedDeployment({
    namespace: NS,
    body: { metadata: { name }, spec: { selector: { matchLabels: labels }, template: tpl } },
  });
  const { pod: stored } = await createDeploymentPod(apps, core, deployment, "5d8f7c");
  assert.ok(
    stored.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER),
    "injected",
  );
  const podRun = await runPod({ core, pod: stored, images: IMAGES });
  try {
    assert.equal(podRun.phase, "Succeeded", podRun.initContainers.map((c) => c.stderr.toString()).join("\n"));
    const pod = await reportStatus(core, stored, podRun);
    return { pod, deployment };
  } finally {
    await podRun.cleanup();
  }
}

interface RotationRun {
  code: number;
  logs: Array<Record<string, unknown>>;
  output: string;
}

async function rotationOnce(args: string[] = [], kubeconfig?: string): Promise<RotationRun> {
  const e = env();
  const r = await run(
    process.execPath,
    [
      CLI,
      "rotation",
      "--once",
      "--kubeconfig",
      kubeconfig ?? e.cp.kubeconfigPath,
      "--namespace",
      NS,
      ...args,
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        AWS_ENDPOINT_URL: e.moto?.endpoint,
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_REGION: "us-east-1",
      },
      encoding: "utf8",
    },
  ).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  const output = `${r.stdout}${r.stderr}`;
  const logs = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const v of VALUES)
    assert.equal(output.includes(v), false, "no secret value in the controller's output");
  return { code: r.code, logs, output };
}

const summary = (r: RotationRun) => r.logs.find((l) => l.msg === "rotation check done");

async function templateAnnotations(name: string): Promise<Record<string, string>> {
  const d = await env().apps.readNamespacedDeployment({ namespace: NS, name });
  return d.spec?.template.metadata?.annotations ?? {};
}

describe("sm-injector rotation", { skip: unsupported }, () => {
  test("the init container's recorded versions reach the pod's status", async () => {
    const { pod } = await deployAndRun("erp-api", true);
    const message = pod.status?.initContainerStatuses?.find((s) => s.name === INIT_CONTAINER)?.state
      ?.terminated?.message;
    const recorded = decodeVersions(message);
    const jwt = recorded?.records?.find((r) => r.secretId === JWT);
    assert.equal(jwt?.stage, "AWSCURRENT");
    assert.equal(jwt?.region, "us-east-1");
    jwtFirst = jwt?.versionId ?? "";
    apiPod = pod.metadata?.name ?? "";
    assert.match(String(message), /erp\/staging\/jwt\/secret_key/);
    for (const v of VALUES) assert.equal(String(message).includes(v), false);
    // Another Deployment, not opted in: never restarted.
    await deployAndRun("erp-quiet", false);
  });

  test("current versions: nothing to do", async () => {
    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(summary(r)?.restarted, []);
    assert.equal(summary(r)?.watchedPods, 1, "only the opted-in pod is watched");
    assert.equal(summary(r)?.stalePods, 0);
    assert.equal(summary(r)?.describeErrors, 0, r.output);
    assert.equal(summary(r)?.secrets, 2);
    assert.equal((await templateAnnotations("erp-api"))["rotation.sm-injector.io/restarted-at"], undefined);
  });

  test("after PutSecretValue: one rolling restart of the Deployment, naming the secret and versions", async () => {
    const before = await env().apps.readNamespacedDeployment({ namespace: NS, name: "erp-api" });
    const { versionId } = (await env().moto?.putSecretValue(JWT, VALUES[2] as string)) ?? { versionId: "" };

    const dry = await rotationOnce(["--dry-run"]);
    assert.deepEqual(summary(dry)?.restarted, [`Deployment/${NS}/erp-api`]);
    assert.equal(
      (await templateAnnotations("erp-api"))["rotation.sm-injector.io/restarted-at"],
      undefined,
      "dry run",
    );

    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(summary(r)?.restarted, [`Deployment/${NS}/erp-api`]);
    const line = r.logs.find((l) => l.msg === "restarting: a secret it reads has a new version");
    assert.deepEqual(line?.changes, [
      `${JWT} AWSCURRENT ${jwtFirst.slice(0, 8)}→${versionId.slice(0, 8)} (us-east-1)`,
    ]);
    assert.deepEqual(line?.stalePods, [apiPod]);
    const annotations = await templateAnnotations("erp-api");
    const at = Date.parse(annotations["rotation.sm-injector.io/restarted-at"] ?? "");
    assert.ok(Math.abs(Date.now() - at) < 60_000, "stamped now");
    assert.match(annotations["rotation.sm-injector.io/restarted-for"] ?? "", /^[0-9a-f]{32}$/);
    const after = await env().apps.readNamespacedDeployment({ namespace: NS, name: "erp-api" });
    assert.notEqual(after.metadata?.generation, before.metadata?.generation, "a new template: a rollout");
    assert.equal((await templateAnnotations("erp-quiet"))["rotation.sm-injector.io/restarted-at"], undefined);

    // The rollout replaces the pods; until then the old pod is still stale: no second restart.
    const again = await rotationOnce();
    assert.deepEqual(summary(again)?.restarted, []);
    assert.ok(
      again.logs.some((l) => l.msg === "stale pods, restart held" && /already restarted/.test(String(l.why))),
    );
    assert.deepEqual(await templateAnnotations("erp-api"), annotations, "not stamped again");
  });

  test("the stamped template still passes the webhook (its annotations are outside sm-injector.io/)", async () => {
    const d = await env().apps.readNamespacedDeployment({ namespace: NS, name: "erp-api" });
    const pod = await env().core.createNamespacedPod({
      namespace: NS,
      dryRun: "All",
      body: {
        metadata: { ...d.spec?.template.metadata, generateName: "erp-api-new-" },
        spec: d.spec?.template.spec,
      },
    } as never);
    assert.ok(pod.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER));
  });

  test("as a service: checks every interval until SIGTERM, then exits 0", async () => {
    const e = env();
    const child = spawn(
      process.execPath,
      [CLI, "rotation", "--interval-seconds", "10", "--kubeconfig", e.cp.kubeconfigPath, "--namespace", NS],
      {
        env: {
          PATH: process.env.PATH ?? "",
          AWS_ENDPOINT_URL: e.moto?.endpoint,
          AWS_ACCESS_KEY_ID: "testing",
          AWS_SECRET_ACCESS_KEY: "testing",
          AWS_REGION: "us-east-1",
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      out += c;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const t0 = Date.now();
      while (!out.includes('"msg":"rotation check done"')) {
        assert.ok(Date.now() - t0 < 30_000, `no check within 30 s: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(child.exitCode, null, "still running between checks");
      child.kill("SIGTERM");
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 5000))]);
      assert.equal(code, 0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("under the chart's RBAC and admission policies: it restarts, and its token can change nothing else", async () => {
    const e = env();
    const release = "sm-injector";
    await e.core.createNamespace({ body: { metadata: { name: RELEASE_NS } } });
    const objs = await renderChart({ "rotation.enabled": true }, { namespace: RELEASE_NS, release });
    const mine = objs.filter(
      (o) => o.metadata.name.startsWith("sm-injector-rotation") && o.kind !== "Deployment",
    );
    assert.deepEqual(mine.map((o) => o.kind).sort(), [
      "ClusterRole",
      "ClusterRoleBinding",
      "ServiceAccount",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicyBinding",
      "ValidatingAdmissionPolicyBinding",
    ]);
    const objects = KubernetesObjectApi.makeApiClient(e.cp.kubeConfig);
    for (const o of mine)
      await objects.create({
        ...o,
        metadata: { ...o.metadata, namespace: o.kind === "ServiceAccount" ? RELEASE_NS : undefined },
      } as never);
    // A kubeconfig with the controller's own ServiceAccount token.
    const { status } = await e.core.createNamespacedServiceAccountToken({
      namespace: RELEASE_NS,
      name: "sm-injector-rotation",
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        { name: "c", server: e.cp.apiServerUrl, caData: Buffer.from(e.cp.caCertPem).toString("base64") },
      ],
      users: [{ name: "rotation", token: status?.token }],
      contexts: [{ name: "c", cluster: "c", user: "rotation" }],
      currentContext: "c",
    });
    const kubeconfig = path.join(e.cp.workDir, "rotation-kubeconfig");
    await writeFile(kubeconfig, kc.exportConfig());
    const asController = kc.makeApiClient(AppsV1Api);
    const patch = (body: object, dryRun?: "All") =>
      asController.patchNamespacedDeployment(
        { namespace: NS, name: "erp-api", body, ...(dryRun && { dryRun }) },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    const refusal = (body: object, dryRun?: "All") =>
      patch(body, dryRun).then(
        () => undefined,
        (err: unknown) => apiError(err),
      );
    // The API server picks new policies up asynchronously: wait (with dry runs) until they apply.
    for (const t0 = Date.now(); !(await refusal({ spec: { replicas: 7 } }, "All")); ) {
      assert.ok(Date.now() - t0 < 30_000, "the admission policy never applied");
      await new Promise((r) => setTimeout(r, 200));
    }
    const refused = async (body: object, message: RegExp) => {
      const error = await refusal(body);
      assert.ok(error, `allowed: ${JSON.stringify(body)}`);
      assert.match(error.message, message);
    };
    await refused({ spec: { replicas: 7 } }, /may not scale/);
    await refused(
      { spec: { template: { spec: { containers: [{ name: "api", image: "evil:latest" }] } } } },
      /may not change the pod spec/,
    );
    await refused(
      {
        spec: { template: { metadata: { annotations: { "sm-injector.io/restart-on-rotation": "false" } } } },
      },
      /only change rotation\.sm-injector\.io\/ annotations/,
    );
    await refused({ metadata: { labels: { owned: "yes" } } }, /may not change the object's labels/);
    const d = await e.apps.readNamespacedDeployment({ namespace: NS, name: "erp-api" });
    assert.equal(d.spec?.replicas, 1);
    assert.equal(d.spec?.template.spec?.containers[0]?.image, APP_IMAGE);

    // What the controller does is allowed: a new version, one restart, with only its RBAC.
    await e.moto?.putSecretValue(JWT, "rot-jwt-key-v3");
    const r = await rotationOnce(["--min-restart-interval-seconds", "0"], kubeconfig);
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(summary(r)?.restarted, [`Deployment/${NS}/erp-api`], r.output);
  });

  test("bad flags: exit 2 naming the flag and its variable", async () => {
    const r = await rotationOnce(["--interval-seconds", "1"]);
    assert.equal(r.code, 2);
    assert.match(r.output, /--interval-seconds \(SM_INJECTOR_INTERVAL_SECONDS\): /);
  });
});
