// Rotation, end to end: a Deployment's pod is created through the API server (mutated by the
// webhook), run by the pod runner (the real `sm-injector fetch`, which records the versions it read
// as its termination message) and its status written as the kubelet would. Then the real
// `sm-injector rotation --once` (the bundle, against moto's DescribeSecret) must leave it alone while
// the versions are current, give the Deployment one rolling restart after a PutSecretValue, and not
// restart it again for the same versions; the stamped template must still pass the webhook.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { V1Deployment, V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { decodeVersions } from "../../src/spec/fetched-versions.ts";
import { CLI } from "../helpers/webhook.ts";
import { createDeploymentPod } from "./harness/controllers.ts";
import { INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E } from "./harness/env.ts";
import { IMAGE_PATH, NODE_BIND, sminjectorImage } from "./harness/images.ts";
import { podRunnerUnsupportedReason, reportStatus, runPod } from "./harness/pod-runner.ts";

const run = promisify(execFile);
const unsupported = podRunnerUnsupportedReason();
const NS = "erp-rotation";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
const VALUES = ["rot-db-password-v1", "rot-jwt-key-v1", "rot-jwt-key-v2"];

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

async function rotationOnce(args: string[] = []): Promise<RotationRun> {
  const e = env();
  const r = await run(
    process.execPath,
    [CLI, "rotation", "--once", "--kubeconfig", e.cp.kubeconfigPath, "--namespace", NS, ...args],
    {
      env: {
        PATH: process.env.PATH ?? "",
        AWS_ENDPOINT_URL: e.moto?.endpoint,
        AWS_ACCESS_KEY_ID: "testing",
        AWS_SECRET_ACCESS_KEY: "testing",
        AWS_REGION: "us-east-1",
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
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
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
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

  test("bad flags: exit 2 naming the flag and its variable", async () => {
    const r = await rotationOnce(["--interval-seconds", "1"]);
    assert.equal(r.code, 2);
    assert.match(r.output, /--interval-seconds \(SM_INJECTOR_INTERVAL_SECONDS\): /);
  });
});
