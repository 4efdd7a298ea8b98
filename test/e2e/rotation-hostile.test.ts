// The rotation controller against hostile tenants (issue 11, cases 3 and 6), through the real
// kube-apiserver and webhook, with the real `sm-injector rotation --once` (the bundle) against moto.
//
// A tenant who may only create pods in a namespace forges everything a pod can carry: labels that
// match another team's Deployment, an ownerReference to its ReplicaSet, a genuinely injected
// sm-injector-fetch container for a secret of their own, and a termination message (written by
// their container, reported by the kubelet; written here as the kubelet would) claiming old
// versions. None of it may steer a restart. And pods the controller reads must not exhaust its
// memory, however large they are.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import https from "node:https";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type {
  V1Deployment,
  V1Pod,
  V1PodSpec,
  V1PodTemplateSpec,
  V1ReplicaSet,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { encodeVersions, type VersionRecord } from "../../src/contract/fetched-versions.ts";
import { CLI } from "../helpers/webhook.ts";
import { createDeploymentPod } from "./harness/controllers.ts";
import { INIT_CONTAINER, INJECT_LABEL, useE2E } from "./harness/env.ts";

const run = promisify(execFile);
const NS = "erp-hostile";
const REGION = "us-east-1";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
/** The attacker's own secret: they can rotate it whenever they like. */
const MINE = "team-x/app/token";
const VALUES = ["hostile-db-v1", "hostile-jwt-v1", "hostile-mine-v1", "hostile-mine-v2", "hostile-jwt-v2"];
const RESTARTED_AT = "rotation.sm-injector.io/restarted-at";
const MiB = 1024 * 1024;

const versions: Record<string, string> = {};

const env = useE2E(
  { before, after },
  {
    moto: true,
    setup: async (e) => {
      await e.createNamespace(NS, { serviceAccounts: { "erp-api": {} } });
      versions[DB] =
        (await e.moto?.createSecret(DB, JSON.stringify({ DATABASE_URL: VALUES[0] })))?.versionId ?? "";
      versions[JWT] = (await e.moto?.createSecret(JWT, VALUES[1] as string))?.versionId ?? "";
      versions[MINE] = (await e.moto?.createSecret(MINE, VALUES[2] as string))?.versionId ?? "";
    },
  },
);

const container = {
  name: "app",
  image: "registry.example.com/app:1",
  env: [{ name: "AWS_REGION", value: REGION }],
};

/** A Deployment with its ReplicaSet (and the ReplicaSet's pod, never run: it stays Pending). */
async function deploy(
  name: string,
  template: V1PodTemplateSpec,
): Promise<{ rs: V1ReplicaSet; d: V1Deployment }> {
  const { apps, core } = env();
  const labels = { app: name };
  const d = await apps.createNamespacedDeployment({
    namespace: NS,
    body: {
      metadata: { name },
      spec: {
        selector: { matchLabels: labels },
        template: {
          ...template,
          metadata: { ...template.metadata, labels: { ...template.metadata?.labels, ...labels } },
        },
      },
    },
  });
  const { replicaSet } = await createDeploymentPod(apps, core, d, `${name.length}5d8f7c`);
  return { rs: replicaSet, d };
}

/** The erp-api Deployment: opted in, reads DB and JWT. */
const optedIn: V1PodTemplateSpec = {
  metadata: {
    labels: { [INJECT_LABEL]: "true" },
    annotations: {
      "sm-injector.io/env.DATABASE_URL": `${DB}#DATABASE_URL`,
      "sm-injector.io/env.JWT_SECRET_KEY": JWT,
      "sm-injector.io/restart-on-rotation": "true",
    },
  },
  spec: { serviceAccountName: "erp-api", containers: [container] },
};

/** Another team's Deployment: never heard of sm-injector. */
const neverOptedIn: V1PodTemplateSpec = { metadata: {}, spec: { containers: [container] } };

/**
 * The attacker's pod: labels and an ownerReference that claim `rs`, annotations that make the
 * webhook inject it for real (`refs`: annotation → reference), and, once "run", a termination
 * message with whatever versions it likes.
 */
async function forgePod(rs: V1ReplicaSet, refs: Record<string, string>): Promise<V1Pod> {
  const { core } = env();
  const created = await core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: {
        generateName: "forged-",
        labels: { ...rs.spec?.template?.metadata?.labels, [INJECT_LABEL]: "true" },
        annotations: { ...refs, "sm-injector.io/restart-on-rotation": "true" },
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "ReplicaSet",
            name: rs.metadata?.name ?? "",
            uid: rs.metadata?.uid ?? "",
            controller: true,
          },
        ],
      },
      spec: { containers: [container] },
    },
  });
  assert.ok(
    created.spec?.initContainers?.some((c) => c.name === INIT_CONTAINER),
    "the webhook injected it",
  );
  return created;
}

/** What the kubelet reports after the pod's init container wrote `records` as its termination message. */
async function claim(pod: V1Pod, records: Array<Omit<VersionRecord, "region" | "stage">>): Promise<void> {
  const { core } = env();
  const name = pod.metadata?.name as string;
  const current = await core.readNamespacedPod({ namespace: NS, name });
  const now = new Date();
  await core.replaceNamespacedPodStatus({
    namespace: NS,
    name,
    body: {
      ...current,
      status: {
        phase: "Running",
        initContainerStatuses: [
          {
            name: INIT_CONTAINER,
            image: "x",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: {
              terminated: {
                exitCode: 0,
                reason: "Completed",
                message: encodeVersions(records.map((r) => ({ ...r, region: REGION, stage: "AWSCURRENT" }))),
                startedAt: now,
                finishedAt: now,
              },
            },
          },
        ],
        containerStatuses: [
          {
            name: "app",
            image: "x",
            imageID: "",
            ready: true,
            restartCount: 0,
            state: { running: { startedAt: now } },
          },
        ],
      },
    },
  });
}

/** Removes a pod at once (no kubelet here to finish a graceful deletion). */
async function removePod(pod: V1Pod): Promise<void> {
  const name = pod.metadata?.name as string;
  await env().core.deleteNamespacedPod({ namespace: NS, name, gracePeriodSeconds: 0 });
}

interface RotationRun {
  code: number;
  logs: Array<Record<string, unknown>>;
  output: string;
  /** Peak resident set size (VmHWM) of the controller process, in bytes. */
  maxRss: number;
}

/**
 * Prints the process's peak RSS at exit: loaded before the bundle, so it measures the old code too.
 * VmHWM, not getrusage's maxrss: that one keeps the parent's (this test's) peak across fork and exec.
 */
const RSS_PROBE = `data:text/javascript,import{readFileSync}from"node:fs";process.on("exit",()=>process.stderr.write("VmHWM="+/VmHWM:\\s*(\\d+)/.exec(readFileSync("/proc/self/status","utf8"))[1]+"\\n"))`;

async function rotationOnce(args: string[] = []): Promise<RotationRun> {
  const e = env();
  const r = await run(
    process.execPath,
    [
      "--import",
      RSS_PROBE,
      CLI,
      "rotation",
      "--once",
      "--kubeconfig",
      e.cp.kubeconfigPath,
      "--namespace",
      NS,
      "--min-restart-interval-seconds",
      "0",
      ...args,
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        AWS_ENDPOINT_URL: e.moto?.endpoint,
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_REGION: REGION,
      },
      encoding: "utf8",
      maxBuffer: 64 * MiB,
    },
  ).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (err: { code: number; stdout: string; stderr: string }) => err,
  );
  const output = `${r.stdout}${r.stderr}`;
  for (const v of VALUES)
    assert.equal(output.includes(v), false, "no secret value in the controller's output");
  const logs = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const maxRss = Number(/VmHWM=(\d+)/.exec(r.stderr)?.[1] ?? Number.NaN) * 1024;
  return { code: r.code, logs, output, maxRss };
}

const restarted = (r: RotationRun) =>
  r.logs.find((l) => l.msg === "rotation check done")?.restarted as string[];

async function templateAnnotations(name: string): Promise<Record<string, string>> {
  const d = await env().apps.readNamespacedDeployment({ namespace: NS, name });
  return d.spec?.template.metadata?.annotations ?? {};
}

describe("sm-injector rotation against forged pods (issue 11, case 3)", () => {
  test("a forged pod cannot restart a Deployment that never opted in", async (t) => {
    const { rs } = await deploy("victim", neverOptedIn);
    const forged = await forgePod(rs, { "sm-injector.io/env.TOKEN": MINE });
    t.after(() => removePod(forged));
    await claim(forged, [{ secretId: MINE, versionId: "an-old-version-of-my-own-secret" }]);

    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(restarted(r), [], r.output);
    assert.equal(
      (await templateAnnotations("victim"))[RESTARTED_AT],
      undefined,
      "the victim was not stamped",
    );
    const distrust = r.logs.find((l) => l.pod === forged.metadata?.name && /not trusted/.test(String(l.msg)));
    assert.match(String(distrust?.why), /Deployment victim did not opt in/, r.output);
  });

  test("a forged pod cannot restart an opted-in Deployment for a secret its template does not reference", async (t) => {
    const { rs } = await deploy("erp-api", optedIn);
    const forged = await forgePod(rs, { "sm-injector.io/env.TOKEN": MINE });
    t.after(() => removePod(forged));
    await claim(forged, [{ secretId: MINE, versionId: "an-old-version-of-my-own-secret" }]);
    // The attacker rotates their own secret for good measure: it still is not erp-api's.
    await env().moto?.putSecretValue(MINE, VALUES[3] as string);

    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(restarted(r), [], r.output);
    assert.equal((await templateAnnotations("erp-api"))[RESTARTED_AT], undefined, "erp-api was not stamped");
    const ignored = r.logs.find((l) => l.pod === forged.metadata?.name && Array.isArray(l.ignored));
    assert.deepEqual(ignored?.ignored, [`${MINE} AWSCURRENT (${REGION})`], r.output);
    const summary = r.logs.find((l) => l.msg === "rotation check done");
    assert.equal(summary?.secrets, 2, "only the template's secrets are described");
  });

  test("alternating forged claims of old versions give at most one restart", async () => {
    const rs = await env().apps.readNamespacedReplicaSet({ namespace: NS, name: "erp-api-75d8f7c" });
    const forged = await forgePod(rs, {
      "sm-injector.io/env.DATABASE_URL": `${DB}#DATABASE_URL`,
      "sm-injector.io/env.JWT_SECRET_KEY": JWT,
    });
    const stamps: string[] = [];
    let restarts = 0;
    for (let i = 0; i < 4; i++) {
      // Odd rounds: "my DB is old"; even rounds: "my JWT is old". Nothing really changes.
      await claim(forged, [
        { secretId: DB, versionId: i % 2 === 0 ? "forged-old-db" : (versions[DB] as string) },
        { secretId: JWT, versionId: i % 2 === 1 ? "forged-old-jwt" : (versions[JWT] as string) },
      ]);
      const r = await rotationOnce();
      assert.equal(r.code, 0, r.output);
      restarts += restarted(r).length;
      stamps.push((await templateAnnotations("erp-api"))[RESTARTED_AT] ?? "");
    }
    process.stderr.write(`4 alternating forged claims: ${restarts} restart(s)\n`);
    assert.ok(restarts <= 1, `${restarts} restarts for 4 alternating forged claims: ${stamps.join(", ")}`);
    assert.equal(new Set(stamps).size, 1, "the template was stamped once at most");
  });
});

/** An object as the API server encodes it (what a controller's ControllerRevision data is made of). */
async function rawJson(path: string): Promise<Record<string, unknown>> {
  const kc = env().cp.kubeConfig;
  const options: https.RequestOptions = { method: "GET" };
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    https
      .get(new URL(path, env().cp.apiServerUrl), options, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve(JSON.parse(body) as Record<string, unknown>));
      })
      .on("error", reject);
  });
}

/**
 * A StatefulSet and the ControllerRevision its controller (not running here) would make: its
 * template as the API server encodes it, `"$patch": "replace"`, owned by the StatefulSet.
 */
async function statefulSet(
  name: string,
  template: V1PodTemplateSpec,
): Promise<{ sts: V1StatefulSet; revision: string }> {
  const { apps } = env();
  const labels = { app: name };
  const sts = await apps.createNamespacedStatefulSet({
    namespace: NS,
    body: {
      metadata: { name },
      spec: {
        serviceName: name,
        selector: { matchLabels: labels },
        template: {
          ...template,
          metadata: { ...template.metadata, labels: { ...template.metadata?.labels, ...labels } },
        },
      },
    },
  });
  const raw = await rawJson(`/apis/apps/v1/namespaces/${NS}/statefulsets/${name}`);
  const rawTemplate = (raw.spec as { template: Record<string, unknown> }).template;
  const hash = "6c9f7d8b4";
  const revision = `${name}-${hash}`;
  await apps.createNamespacedControllerRevision({
    namespace: NS,
    body: {
      metadata: {
        name: revision,
        labels: { ...labels, "controller-revision-hash": hash },
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "StatefulSet",
            name,
            uid: sts.metadata?.uid ?? "",
            controller: true,
          },
        ],
      },
      revision: 1,
      data: { spec: { template: { ...rawTemplate, $patch: "replace" } } },
    },
  });
  return { sts, revision };
}

/** A pod claiming to be `sts`'s (labels, controller-revision-hash, ownerReference), injected by the webhook. */
async function statefulSetPod(
  sts: V1StatefulSet,
  revision: string,
  annotations: Record<string, string>,
): Promise<V1Pod> {
  const name = sts.metadata?.name as string;
  return env().core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: {
        generateName: `${name}-`,
        labels: { app: name, [INJECT_LABEL]: "true", "controller-revision-hash": revision },
        annotations: { ...annotations, "sm-injector.io/restart-on-rotation": "true" },
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "StatefulSet",
            name,
            uid: sts.metadata?.uid ?? "",
            controller: true,
          },
        ],
      },
      spec: { ...(sts.spec?.template.spec as V1PodSpec), containers: [container] },
    },
  });
}

describe("sm-injector rotation and StatefulSets (ControllerRevisions)", () => {
  test("a forged pod cannot restart a StatefulSet that never opted in", async (t) => {
    const { sts, revision } = await statefulSet("victim-sts", neverOptedIn);
    const forged = await statefulSetPod(sts, revision, { "sm-injector.io/env.TOKEN": MINE });
    t.after(() => removePod(forged));
    await claim(forged, [{ secretId: MINE, versionId: "an-old-version-of-my-own-secret" }]);
    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(restarted(r), [], r.output);
    const s = await env().apps.readNamespacedStatefulSet({ namespace: NS, name: "victim-sts" });
    assert.equal(
      s.spec?.template.metadata?.annotations?.[RESTARTED_AT],
      undefined,
      "the victim was not stamped",
    );
  });

  test("a real rotation restarts an opted-in StatefulSet: its pod verified through its ControllerRevision", async () => {
    const { sts, revision } = await statefulSet("erp-sts", optedIn);
    const pod = await statefulSetPod(sts, revision, {
      "sm-injector.io/env.DATABASE_URL": `${DB}#DATABASE_URL`,
      "sm-injector.io/env.JWT_SECRET_KEY": JWT,
    });
    await claim(pod, [
      { secretId: DB, versionId: versions[DB] as string },
      { secretId: JWT, versionId: versions[JWT] as string },
    ]);
    const quiet = await rotationOnce();
    assert.equal(quiet.code, 0, quiet.output);
    assert.ok(!restarted(quiet).includes(`StatefulSet/${NS}/erp-sts`), quiet.output);
    assert.ok(
      !quiet.logs.some((l) => l.pod === pod.metadata?.name && /not trusted/.test(String(l.msg))),
      `the real pod is verified: ${quiet.output}`,
    );
    await env().moto?.putSecretValue(JWT, "hostile-jwt-v2");
    const r = await rotationOnce();
    assert.ok(restarted(r).includes(`StatefulSet/${NS}/erp-sts`), r.output);
    const s = await env().apps.readNamespacedStatefulSet({ namespace: NS, name: "erp-sts" });
    assert.match(
      s.spec?.template.metadata?.annotations?.["rotation.sm-injector.io/restarted-for"] ?? "",
      /^[0-9a-f]{32}$/,
    );
  });
});

describe("sm-injector rotation with large pods (issue 11, case 6)", () => {
  test("30 pods of 1.4 MB each, half of them running: the controller's peak RSS stays far below the chart's 192 MiB", async () => {
    const { core } = env();
    const big = "x".repeat(Math.floor((1.4 * MiB) / 4));
    const names = Array.from({ length: 30 }, (_, i) => `big-${i}`);
    // Created 5 at a time: the webhook holds at most 16 MiB of large AdmissionReviews at once and
    // refuses the rest of a burst unread (body-budget.ts, tested in webhook-slow-clients.test.ts), which
    // the API server reports as a failed webhook call. The controller's memory is what this test is about.
    for (let i = 0; i < names.length; i += 5)
      await Promise.all(
        names.slice(i, i + 5).map((name) =>
          core.createNamespacedPod({
            namespace: NS,
            body: {
              metadata: {
                name,
                labels: { [INJECT_LABEL]: "true", app: "big" },
                annotations: {
                  "sm-injector.io/env.TOKEN": MINE,
                  "sm-injector.io/restart-on-rotation": "true",
                },
              },
              spec: {
                containers: [
                  {
                    ...container,
                    env: [...container.env, ...[1, 2, 3, 4].map((n) => ({ name: `BLOB_${n}`, value: big }))],
                  },
                ],
              },
            },
          }),
        ),
      );
    // Pending pods are not even sent (field selector); running ones are read in pages bounded in bytes.
    for (const name of names.slice(15)) {
      const pod = await core.readNamespacedPod({ namespace: NS, name });
      await core.replaceNamespacedPodStatus({
        namespace: NS,
        name,
        body: { ...pod, status: { phase: "Running" } },
      });
    }
    const r = await rotationOnce();
    assert.equal(r.code, 0, r.output);
    assert.ok(Number.isFinite(r.maxRss), r.output);
    const summary = r.logs.find((l) => l.msg === "rotation check done");
    assert.ok(Number(summary?.pods) >= 15, "the running ones were read");
    process.stderr.write(
      `rotation --once over 30 1.4 MB pods (15 running): peak RSS ${(r.maxRss / MiB).toFixed(1)} MiB\n`,
    );
    // Generous: node with the bundle alone is ~85 MiB here; the old code (every pod in one list) took ~250.
    assert.ok(r.maxRss < 150 * MiB, `peak RSS ${(r.maxRss / MiB).toFixed(1)} MiB`);
  });
});
