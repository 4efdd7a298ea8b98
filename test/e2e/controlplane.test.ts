import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { AdmissionregistrationV1Api, CoreV1Api } from "@kubernetes/client-node";
import { generateCA, generateCert } from "./harness/certs.ts";
import { type ControlPlane, readPinnedVersions, startControlPlane } from "./harness/controlplane.ts";
import { getFreePort } from "./harness/ports.ts";

const execFileAsync = promisify(execFile);

let cp: ControlPlane;
let startupMs = 0;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

before(async () => {
  const t0 = performance.now();
  cp = await startControlPlane();
  startupMs = performance.now() - t0;
  process.stderr.write(`control plane ready at ${cp.apiServerUrl} in ${Math.round(startupMs)} ms\n`);
});

after(async () => {
  await cp?.stop();
});

test("kube-apiserver and etcd report the pinned versions", async () => {
  const pins = readPinnedVersions();
  const kas = await execFileAsync(path.join(cp.binDir, "kube-apiserver"), ["--version"]);
  assert.equal(kas.stdout.trim(), `Kubernetes ${pins.KUBERNETES_VERSION}`);
  const etcd = await execFileAsync(path.join(cp.binDir, "etcd"), ["--version"]);
  assert.match(etcd.stdout, new RegExp(`etcd Version: ${pins.ETCD_VERSION?.replace(/^v/, "")}\\b`));
});

test("namespace, ServiceAccount and Pod round-trip through the API server", async () => {
  const core = cp.kubeConfig.makeApiClient(CoreV1Api);
  const namespace = "smoke";
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  // No controller-manager: the default ServiceAccount is not created for us.
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: "default" } } });
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: "app" } } });

  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name: "hello", labels: { app: "hello" } },
      spec: { serviceAccountName: "app", containers: [{ name: "main", image: "busybox", command: ["sh"] }] },
    },
  });
  const pod = await core.readNamespacedPod({ namespace, name: "hello" });
  assert.equal(pod.metadata?.name, "hello");
  assert.equal(pod.spec?.serviceAccountName, "app");
  assert.deepEqual(pod.spec?.containers[0]?.command, ["sh"]);
  assert.equal(pod.status?.phase, "Pending");
  // The ServiceAccount admission plugin mounted the projected API token, like a real cluster.
  const tokenVolume = pod.spec?.volumes?.find((v) => v.name.startsWith("kube-api-access-"));
  assert.ok(tokenVolume?.projected, "projected kube-api-access volume");
  assert.ok(
    pod.spec?.containers[0]?.volumeMounts?.some(
      (m) => m.mountPath === "/var/run/secrets/kubernetes.io/serviceaccount",
    ),
  );

  // A pod without serviceAccountName uses "default".
  await core.createNamespacedPod({
    namespace,
    body: { metadata: { name: "hello-default" }, spec: { containers: [{ name: "main", image: "busybox" }] } },
  });
});

test("without a controller-manager, a pod needs its ServiceAccount to exist (ServiceAccount plugin)", async () => {
  const core = cp.kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: "no-sa" } } });
  await assert.rejects(
    core.createNamespacedPod({
      namespace: "no-sa",
      body: { metadata: { name: "orphan" }, spec: { containers: [{ name: "main", image: "busybox" }] } },
    }),
    /error looking up service account no-sa\/default/,
  );
});

test("TokenRequest issues a JWT for the sts.amazonaws.com audience", async () => {
  const core = cp.kubeConfig.makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: "smoke",
    name: "app",
    body: { spec: { audiences: ["sts.amazonaws.com"], expirationSeconds: 3600 } },
  });
  const token = tr.status?.token ?? "";
  const parts = token.split(".");
  assert.equal(parts.length, 3, "a JWT has three parts");
  const header = JSON.parse(Buffer.from(parts[0] ?? "", "base64url").toString("utf8"));
  const claims = JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8"));
  assert.equal(header.alg, "RS256");
  assert.equal(claims.iss, "https://kubernetes.default.svc.cluster.local");
  assert.deepEqual(claims.aud, ["sts.amazonaws.com"]);
  assert.equal(claims.sub, "system:serviceaccount:smoke:app");
});

test("the API server calls a webhook registered by loopback URL with a caBundle", async () => {
  const pki = path.join(cp.workDir, "webhook-pki");
  const ca = await generateCA(pki, "webhook-ca");
  const serving = await generateCert(pki, ca, { cn: "webhook", sans: ["127.0.0.1", "localhost"] });
  let calls = 0;
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      calls++;
      const review = JSON.parse(body) as { request: { uid: string } };
      const patch = [{ op: "add", path: "/metadata/labels/mutated", value: "yes" }];
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          apiVersion: "admission.k8s.io/v1",
          kind: "AdmissionReview",
          response: {
            uid: review.request.uid,
            allowed: true,
            patchType: "JSONPatch",
            patch: Buffer.from(JSON.stringify(patch)).toString("base64"),
          },
        }),
      );
    });
  });
  const port = await getFreePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  try {
    const admission = cp.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    await admission.createMutatingWebhookConfiguration({
      body: {
        metadata: { name: "smoke" },
        webhooks: [
          {
            name: "smoke.sm-injector.io",
            admissionReviewVersions: ["v1"],
            sideEffects: "None",
            failurePolicy: "Fail",
            clientConfig: {
              url: `https://127.0.0.1:${port}/mutate`,
              caBundle: Buffer.from(ca.certPem).toString("base64"),
            },
            rules: [{ operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"] }],
            objectSelector: { matchLabels: { "smoke/inject": "true" } },
          },
        ],
      },
    });
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    const pod = await core.createNamespacedPod({
      namespace: "smoke",
      body: {
        metadata: { name: "mutated", labels: { "smoke/inject": "true" } },
        spec: { serviceAccountName: "app", containers: [{ name: "main", image: "busybox" }] },
      },
    });
    assert.equal(pod.metadata?.labels?.mutated, "yes");
    assert.equal(calls, 1);
    await admission.deleteMutatingWebhookConfiguration({ name: "smoke" });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test("stop() kills kube-apiserver and etcd, removes the work dir, and is idempotent", async () => {
  const pids = [cp.processes.apiServer.pid, cp.processes.etcd.pid];
  assert.ok(pids.every(isAlive));
  const t0 = performance.now();
  await Promise.all([cp.stop(), cp.stop()]);
  process.stderr.write(`control plane stopped in ${Math.round(performance.now() - t0)} ms\n`);
  await cp.stop();
  for (const pid of pids) assert.equal(isAlive(pid), false, `process ${pid} is gone`);
  assert.equal(existsSync(cp.workDir), false);
});
