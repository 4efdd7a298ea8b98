// The review, end to end: workloads created through the real API server (pods mutated by the
// webhook and run by the pod runner: the real `sm-injector fetch` doing IRSA against moto's STS),
// then the bundle's `sm-injector report` under the chart's read-only ClusterRole, and the rotation
// controller's /metrics. moto's RotateSecret stands in for a Secrets Manager rotation.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { RotateSecretCommand } from "@aws-sdk/client-secrets-manager";
import {
  BatchV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type V1Pod,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import type { Review } from "../../src/report/review.ts";
import { completedInitStatus } from "../helpers/forged.ts";
import { renderChart } from "../helpers/tools.ts";
import { CLI } from "../helpers/webhook.ts";
import { createDeploymentPod } from "./harness/controllers.ts";
import { INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E } from "./harness/env.ts";
import { IMAGE_PATH, NODE_BIND, sminjectorImage } from "./harness/images.ts";
import { podRunnerUnsupportedReason, reportStatus, runPod } from "./harness/pod-runner.ts";
import { getFreePort } from "./harness/ports.ts";

const run = promisify(execFile);
const unsupported = podRunnerUnsupportedReason();
const NS = "erp-review";
const OTHER_NS = "erp-batch";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
const VALUES = ["review-db-url-v1", "review-jwt-v1"];
const ROLE = "arn:aws:iam::123456789012:role/erp-api";
const APP_IMAGE = "registry.example.com/erp/api:2.0.0";
const IMAGES = {
  [INIT_IMAGE]: sminjectorImage(),
  [APP_IMAGE]: { env: { PATH: IMAGE_PATH }, binds: [NODE_BIND] },
};

const noop = () => {};
const env = useE2E(unsupported ? { before: noop, after: noop } : { before, after }, {
  moto: true,
  setup: async (e) => {
    const serviceAccounts = { "erp-api": { "eks.amazonaws.com/role-arn": ROLE } };
    // erp-review allows secrets 1 s old at most (so its secrets are over it); erp-batch 90 days.
    await e.createNamespace(NS, { annotations: { "sm-injector.io/max-secret-age": "1s" }, serviceAccounts });
    await e.createNamespace(OTHER_NS, {
      annotations: { "sm-injector.io/max-secret-age": "90d" },
      serviceAccounts,
    });
    await e.moto?.createSecret(DB, JSON.stringify({ DATABASE_URL: VALUES[0] }));
    await e.moto?.createSecret(JWT, VALUES[1] as string);
  },
});

function template(annotations: Record<string, string>, restartPolicy?: string): V1PodTemplateSpec {
  return {
    metadata: { labels: { app: "erp", [INJECT_LABEL]: "true" }, annotations },
    spec: {
      serviceAccountName: "erp-api",
      ...(restartPolicy && { restartPolicy }),
      securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
      containers: [
        {
          name: "app",
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

/** Runs the stored pod as the kubelet would and writes its status; returns the init container's log lines. */
async function runAndReport(stored: V1Pod): Promise<Array<Record<string, unknown>>> {
  assert.ok(
    stored.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER),
    "injected",
  );
  const podRun = await runPod({ core: env().core, pod: stored, images: IMAGES });
  try {
    const init = podRun.initContainers.find((c) => c.name === INIT_CONTAINER);
    assert.equal(podRun.phase, "Succeeded", init?.stderr.toString());
    await reportStatus(env().core, stored, podRun);
    return (init?.stdout.toString() ?? "")
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } finally {
    await podRun.cleanup();
  }
}

let apiPod = "";
let batchPod = "";
let dbBefore = "";
let reportKubeconfig = "";

const awsEnv = () => ({
  PATH: process.env.PATH ?? "",
  AWS_ENDPOINT_URL: env().moto?.endpoint,
  AWS_ACCESS_KEY_ID: "testing",
  AWS_SECRET_ACCESS_KEY: "testing",
  AWS_REGION: "us-east-1",
});

async function report(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [CLI, "report", "--kubeconfig", reportKubeconfig, ...args], {
    env: awsEnv(),
    encoding: "utf8",
  }).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  for (const v of VALUES) assert.equal(`${r.stdout}${r.stderr}`.includes(v), false, "no secret value");
  return r;
}

/**
 * A kubeconfig with the token of a new ServiceAccount bound to the ClusterRole `role` only, as the
 * chart renders it with `values`.
 */
async function chartIdentity(
  values: Record<string, string | number | boolean>,
  role: string,
  account: string,
): Promise<string> {
  const e = env();
  const objs = await renderChart(values, { namespace: "sm-injector", release: "sm-injector" });
  const rendered = objs.find((o) => o.kind === "ClusterRole" && o.metadata.name === role);
  assert.ok(rendered, `the chart renders the ClusterRole ${role}`);
  const objects = KubernetesObjectApi.makeApiClient(e.cp.kubeConfig);
  await objects.create(rendered as never);
  await e.core.createNamespacedServiceAccount({
    namespace: "reviewers",
    body: { metadata: { name: account } },
  });
  await objects.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: account },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
    subjects: [{ kind: "ServiceAccount", name: account, namespace: "reviewers" }],
  } as never);
  const { status } = await e.core.createNamespacedServiceAccountToken({
    namespace: "reviewers",
    name: account,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: "c", server: e.cp.apiServerUrl, caData: Buffer.from(e.cp.caCertPem).toString("base64") },
    ],
    users: [{ name: account, token: status?.token }],
    contexts: [{ name: "c", cluster: "c", user: account }],
    currentContext: "c",
  });
  const file = path.join(e.cp.workDir, `${account}-kubeconfig`);
  await writeFile(file, kc.exportConfig());
  return file;
}

let controllerKubeconfig = "";

describe("sm-injector report and the controller's metrics", { skip: unsupported }, () => {
  test("a Deployment and a CronJob run; CloudTrail's session name names each pod", async () => {
    const { apps, core } = env();
    const deployment = await apps.createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: "erp-api" },
        spec: {
          selector: { matchLabels: { app: "erp" } },
          template: template({
            "sm-injector.io/env.DATABASE_URL": `${DB}#DATABASE_URL`,
            "sm-injector.io/env.JWT": JWT,
          }),
        },
      },
    });
    const { pod } = await createDeploymentPod(apps, core, deployment, "6b7c8d");
    apiPod = pod.metadata?.name ?? "";
    const logs = await runAndReport(pod);
    // The downward API's names reached the init container: the IRSA session is named after the pod.
    assert.equal(
      logs.find((l) => l.msg === "fetched secret")?.roleSessionName,
      `sm-injector.${NS}.${apiPod}`,
    );

    // A CronJob's Job (its selector and labels set by the API server) and one pod of it.
    const batch = env().cp.kubeConfig.makeApiClient(BatchV1Api);
    const jobTemplate = template({ "sm-injector.io/env.JWT": JWT }, "Never");
    const cronJob = await batch.createNamespacedCronJob({
      namespace: OTHER_NS,
      body: {
        metadata: { name: "erp-nightly" },
        spec: { schedule: "0 3 * * *", jobTemplate: { spec: { template: jobTemplate } } },
      },
    });
    const job = await batch.createNamespacedJob({
      namespace: OTHER_NS,
      body: {
        metadata: {
          name: "erp-nightly-29000000",
          ownerReferences: [
            {
              apiVersion: "batch/v1",
              kind: "CronJob",
              name: "erp-nightly",
              uid: cronJob.metadata?.uid as string,
              controller: true,
            },
          ],
        },
        spec: { template: cronJob.spec?.jobTemplate.spec?.template as V1PodTemplateSpec },
      },
    });
    const jobTpl = job.spec?.template as V1PodTemplateSpec;
    const created = await core.createNamespacedPod({
      namespace: OTHER_NS,
      body: {
        metadata: {
          ...jobTpl.metadata,
          generateName: "erp-nightly-29000000-",
          ownerReferences: [
            {
              apiVersion: "batch/v1",
              kind: "Job",
              name: job.metadata?.name as string,
              uid: job.metadata?.uid as string,
              controller: true,
            },
          ],
        },
        spec: jobTpl.spec,
      } as V1Pod,
    });
    batchPod = created.metadata?.name ?? "";
    await runAndReport(await core.readNamespacedPod({ namespace: OTHER_NS, name: batchPod }));

    // A pod that claims to be erp-api's (labels, an owner that does not exist) and a secret it never read.
    const forged = await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: {
          name: "erp-api-forged",
          labels: { app: "erp", [INJECT_LABEL]: "true", "pod-template-hash": "6b7c8d" },
          annotations: { "sm-injector.io/env.JWT": JWT },
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: "erp-api-6b7c8d",
              uid: "00000000-0000-4000-8000-000000000000",
              controller: true,
            },
          ],
        },
        spec: template({}).spec as V1Pod["spec"],
      } as V1Pod,
    });
    await core.replaceNamespacedPodStatus({
      namespace: NS,
      name: "erp-api-forged",
      body: {
        ...forged,
        status: {
          phase: "Running",
          initContainerStatuses: [
            completedInitStatus(
              INIT_CONTAINER,
              JSON.stringify({
                "sm-injector/versions": 1,
                digest: "0".repeat(64),
                records: [[JWT, "us-east-1", "AWSCURRENT", "forged"]],
              }),
            ),
          ],
        },
      },
    });

    // A rotation of the database secret after the pod started: erp-api's pod is now on a superseded version.
    const d = await env().moto?.client.send(
      new RotateSecretCommand({ SecretId: DB, RotationRules: { AutomaticallyAfterDays: 30 } }),
    );
    dbBefore = d?.VersionId ?? "";
    await core.createNamespace({ body: { metadata: { name: "reviewers" } } });
    reportKubeconfig = await chartIdentity({ "report.clusterRole": true }, "sm-injector-report", "reviewer");
    controllerKubeconfig = await chartIdentity(
      { "rotation.enabled": true, "rotation.metrics.port": 9090 },
      "sm-injector-rotation",
      "rotation",
    );
    // Older than erp-review's 1 s: moto's dates are whole seconds, so over 2 s after the rotation.
    await new Promise((r) => setTimeout(r, 2100));
  });

  test("--output json under the read-only ClusterRole: workloads, versions, rotation state, readers", async () => {
    const r = await report(["--output", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const review = JSON.parse(r.stdout) as Review;
    assert.deepEqual(
      review.workloads.map((w) => `${w.kind}/${w.namespace}/${w.name} ${w.pods}`),
      [`CronJob/${OTHER_NS}/erp-nightly 1`, `Deployment/${NS}/erp-api 1`],
    );
    const api = review.workloads.find((w) => w.name === "erp-api");
    const db = api?.references.find((x) => x.secretId === DB);
    assert.equal(db?.stage, "AWSCURRENT");
    assert.equal(db?.region, "us-east-1");
    assert.equal(db?.currentVersionId, dbBefore, "the rotated version is current");
    assert.equal(db?.pods[0]?.pod, apiPod);
    assert.notEqual(db?.pods[0]?.versionId, dbBefore);
    assert.equal(db?.pods[0]?.superseded, true, "started before the rotation");
    const jwt = api?.references.find((x) => x.secretId === JWT);
    assert.equal(jwt?.pods[0]?.superseded, false);
    assert.deepEqual(jwt?.alsoReadBy, [`CronJob/${OTHER_NS}/erp-nightly`]);
    assert.deepEqual(db?.alsoReadBy, []);
    assert.deepEqual(api?.overMaxAge.sort(), [`${DB} (us-east-1)`, `${JWT} (us-east-1)`]);
    const nightly = review.workloads.find((w) => w.name === "erp-nightly");
    assert.equal(nightly?.references[0]?.pods[0]?.pod, batchPod);
    assert.deepEqual(nightly?.overMaxAge, []);

    const dbState = review.secrets.find((s) => s.secretId === DB);
    assert.equal(dbState?.rotationEnabled, true);
    assert.ok(dbState?.lastRotatedDate && dbState.nextRotationDate && dbState.lastChangedDate);
    assert.equal(dbState?.supersededPods, 1);
    assert.deepEqual(dbState?.readers, [`Deployment/${NS}/erp-api`]);
    const jwtState = review.secrets.find((s) => s.secretId === JWT);
    assert.equal(jwtState?.rotationEnabled, false);
    assert.equal(jwtState?.lastRotatedDate, undefined);
    assert.deepEqual(jwtState?.readers, [`CronJob/${OTHER_NS}/erp-nightly`, `Deployment/${NS}/erp-api`]);
    assert.equal(jwtState?.maxAgeSeconds, 1, "the strictest namespace of its readers");

    // The forged pod is listed as unverified; its claims count nowhere.
    assert.deepEqual(
      review.unverifiedPods.map((p) => p.pod),
      ["erp-api-forged"],
    );
    assert.match(review.unverifiedPods[0]?.why ?? "", /ReplicaSet erp-api-6b7c8d/);
    assert.ok(!JSON.stringify(review.workloads).includes("forged"));
  });

  test("the table, for a person", async () => {
    const r = await report([]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `Deployment ${NS}/erp-api +erp/production/database +us-east-1 +AWSCURRENT +${dbBefore.slice(0, 8)} +1 [0-9a-f]{8} superseded`,
      ),
    );
    assert.match(r.stdout, /erp\/production\/database +us-east-1 +on +\d{4}-/);
    assert.match(
      r.stdout,
      new RegExp(
        `Older than their namespace's sm-injector.io/max-secret-age:\\n  Deployment ${NS}/erp-api \\(max 1s\\)`,
      ),
    );
    assert.match(r.stdout, /Pods not verified \(their claims are left out\): 1/);
  });

  test("the report's identity cannot read a Secret or change anything (RBAC is read-only)", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(reportKubeconfig);
    const objects = KubernetesObjectApi.makeApiClient(kc);
    await assert.rejects(objects.list("v1", "Secret", NS), (e: { code?: number }) => e.code === 403);
    await assert.rejects(
      objects.patch(
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "erp-api", namespace: NS, labels: { x: "y" } },
        },
        undefined,
        undefined,
        undefined,
        undefined,
        "application/merge-patch+json" as never,
      ),
      (e: { code?: number }) => e.code === 403,
    );
  });

  test("the rotation controller's /metrics under the chart's role: bounded per-secret gauges, the cap counted, an Event", async () => {
    const scrape = await controllerMetrics(["--metrics-max-secrets", "500"]);
    const db = `{region="us-east-1",secret="${DB}"}`;
    const jwt = `{region="us-east-1",secret="${JWT}"}`;
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_rotation_enabled${esc(db)} 1$`, "m"));
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_rotation_enabled${esc(jwt)} 0$`, "m"));
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_superseded_pods${esc(db)} 1$`, "m"));
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_superseded_pods${esc(jwt)} 0$`, "m"));
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_max_age_seconds${esc(jwt)} 1$`, "m"));
    assert.match(scrape.text, new RegExp(`^sm_injector_secret_age_seconds${esc(db)} \\d+$`, "m"));
    assert.match(scrape.text, /^sm_injector_workloads_over_max_secret_age 1$/m);
    assert.match(scrape.text, /^sm_injector_unverified_pods 1$/m);
    assert.match(scrape.text, /^sm_injector_secrets_unlabelled 0$/m);
    assert.ok(
      scrape.logs.some(
        (l) =>
          String(l.msg).startsWith(
            "reads secrets older than its namespace's sm-injector.io/max-secret-age (1s)",
          ) && l.name === "erp-api",
      ),
      "the controller warns about the workload over its namespace's maximum age",
    );
    for (const v of VALUES) assert.equal(scrape.text.includes(v) || scrape.output.includes(v), false);

    const capped = await controllerMetrics(["--metrics-max-secrets", "1"]);
    assert.equal(capped.text.match(/^sm_injector_secret_rotation_enabled\{/gm)?.length, 1);
    assert.match(capped.text, /^sm_injector_secrets_unlabelled 1$/m);

    // The warning reaches the workload's team as an Event on the Deployment, counted up, not repeated.
    const events = (await env().core.listNamespacedEvent({ namespace: NS })).items.filter(
      (ev) => ev.reason === "SecretOverMaxAge",
    );
    assert.equal(events.length, 1);
    assert.equal(events[0]?.type, "Warning");
    assert.deepEqual(
      [events[0]?.involvedObject.kind, events[0]?.involvedObject.name],
      ["Deployment", "erp-api"],
    );
    assert.equal(events[0]?.count, 2);
    assert.match(events[0]?.message ?? "", /erp\/production\/database \(us-east-1\) \d+s old/);
    const elsewhere = (await env().core.listNamespacedEvent({ namespace: OTHER_NS })).items;
    assert.equal(
      elsewhere.filter((ev) => ev.reason === "SecretOverMaxAge").length,
      0,
      "erp-batch's 90 days are not exceeded",
    );
  });
});

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/**
 * `sm-injector rotation` as a service with --metrics-port, under the chart's ClusterRole for it:
 * the first scrape after its first check.
 */
async function controllerMetrics(args: string[]) {
  const port = await getFreePort();
  const child = spawn(
    process.execPath,
    [
      CLI,
      "rotation",
      "--dry-run",
      "--interval-seconds",
      "60",
      "--kubeconfig",
      controllerKubeconfig,
      "--metrics-port",
      String(port),
      ...args,
    ],
    { env: awsEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => {
    output += c;
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    output += c;
  });
  try {
    const t0 = Date.now();
    let text = "";
    while (!/^sm_injector_review_timestamp_seconds [1-9]/m.test(text)) {
      assert.ok(Date.now() - t0 < 30_000, `no review within 30 s: ${output}`);
      await new Promise((r) => setTimeout(r, 200));
      text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
        (r) => r.text(),
        () => "",
      );
    }
    const logs = output
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { text, logs, output };
  } finally {
    child.kill("SIGTERM");
  }
}
