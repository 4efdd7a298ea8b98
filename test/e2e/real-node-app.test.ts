// The example FastAPI Deployment (examples/fastapi-env-file.yaml) on the real node, end to end: the
// chart's webhook (helm, the project image) injects the pods the real Deployment and ReplicaSet
// controllers make; the kubelet runs the init container with a real projected token (IRSA against
// moto's STS, listening where the pods reach it) and the app (uvicorn + pydantic-settings, the app
// image) loads the env file: its GET /settings, called over the pod network, answers the sha256 of
// each setting, compared with the values put in moto (never printed). With the webhook scaled to zero,
// a pod that did not opt in still starts and an opted-in one is refused by the API server. Then
// `sm-injector rotation` (the bundle, on the host) after a new AWSCURRENT: a real rolling update whose
// new pods load the new version, while the app's PodDisruptionBudget (minAvailable 1) always holds.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type V1Deployment,
  type V1Pod,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { type Moto, startMoto, TEST_CREDENTIALS } from "../helpers/moto.ts";
import { CLI } from "../helpers/webhook.ts";
import { REPO_ROOT } from "./harness/controlplane.ts";
import { apiError } from "./harness/env.ts";
import {
  busyboxImage,
  createNamespace,
  isPodReady,
  type RealNode,
  useRealNode,
  waitUntil,
} from "./harness/real-node.ts";
import { POD_GATEWAY } from "./harness/real-node-config.ts";
import {
  appImage,
  type ImageArchive,
  installChart,
  projectImage,
  RELEASE_NS,
} from "./harness/real-node-images.ts";

const run = promisify(execFile);
const [injectorImage, exampleAppImage] = await Promise.all([projectImage(), appImage()]);
const skip = [injectorImage, exampleAppImage].find((i): i is string => typeof i === "string") ?? false;

const EXAMPLE = path.join(REPO_ROOT, "examples", "fastapi-env-file.yaml");
const NS = "erp";
const APP = "erp-api";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
const REGION = "us-east-1";

let core: CoreV1Api;
let apps: AppsV1Api;
let policy: PolicyV1Api;
let moto: Moto;
let BUSYBOX: string;
/** The values put in moto, by setting name (only their hashes are ever compared or shown). */
const values = { DATABASE_URL: "", JWT_SECRET_KEY: "" };

const sha256 = (v: string) => `sha256:${createHash("sha256").update(v).digest("hex")}`;

async function setUp(n: RealNode): Promise<void> {
  if (typeof injectorImage === "string" || typeof exampleAppImage === "string") return;
  core = n.kubeConfig.makeApiClient(CoreV1Api);
  apps = n.kubeConfig.makeApiClient(AppsV1Api);
  policy = n.kubeConfig.makeApiClient(PolicyV1Api);
  const busybox = busyboxImage(n.binDir);
  BUSYBOX = busybox.name;
  await Promise.all([
    n.importImage(injectorImage.archive, injectorImage.name),
    n.importImage(exampleAppImage.archive, exampleAppImage.name),
    n.importImage(busybox.archive, busybox.name),
  ]);
  moto = await startMoto({ listenHost: "0.0.0.0", region: REGION });
  values.DATABASE_URL = `postgresql://erp:p'a"s$s-${process.pid}@db.internal:5432/erp`;
  values.JWT_SECRET_KEY = `jwt-v1-${process.pid}-#not a comment`;
  await moto.createSecret(DB, JSON.stringify({ DATABASE_URL: values.DATABASE_URL }));
  await moto.createSecret(JWT, values.JWT_SECRET_KEY);
  await createNamespace(core, NS);
  const helm = await installChart(n.kubeconfigPath, injectorImage);
  assert.equal(helm.code, 0, helm.stderr);
}

/**
 * The example's ServiceAccount and Deployment, as a user would apply them, with what this bed needs:
 * the app image (nothing is pulled), moto's endpoint and region (the init container takes AWS_* from
 * the app container), a readiness probe on /healthz; plus a Service and a PodDisruptionBudget.
 */
function exampleObjects(image: string): { serviceAccount: object; deployment: V1Deployment } {
  const docs = parseAllDocuments(readFileSync(EXAMPLE, "utf8")).map((d) => d.toJS());
  const serviceAccount = docs.find((d) => d.kind === "ServiceAccount");
  const deployment = docs.find((d) => d.kind === "Deployment") as V1Deployment;
  const template = deployment.spec?.template;
  const annotations = template?.metadata?.annotations as Record<string, string>;
  annotations["sm-injector.io/region"] = REGION;
  const api = template?.spec?.containers[0];
  assert.ok(api && template?.spec, `${EXAMPLE} has no container`);
  template.spec.terminationGracePeriodSeconds = 2;
  Object.assign(api, {
    image,
    imagePullPolicy: "Never",
    env: [{ name: "AWS_ENDPOINT_URL", value: `http://${POD_GATEWAY}:${moto.port}` }],
    readinessProbe: { httpGet: { path: "/healthz", port: 8000 }, periodSeconds: 1 },
  });
  return { serviceAccount, deployment };
}

async function applyExample(image: string): Promise<void> {
  const { serviceAccount, deployment } = exampleObjects(image);
  await core.createNamespacedServiceAccount({ namespace: NS, body: serviceAccount });
  await apps.createNamespacedDeployment({ namespace: NS, body: deployment });
  await core.createNamespacedService({
    namespace: NS,
    body: {
      metadata: { name: APP },
      spec: { selector: { app: APP }, ports: [{ name: "http", port: 80, targetPort: 8000 }] },
    },
  });
  await policy.createNamespacedPodDisruptionBudget({
    namespace: NS,
    body: { metadata: { name: APP }, spec: { minAvailable: 1, selector: { matchLabels: { app: APP } } } },
  });
}

/** The Deployment rolled out: every replica of the newest template Ready, no old pod left. */
async function waitForRollout(name: string, namespace: string, timeoutMs = 120_000): Promise<void> {
  await waitUntil(`the ${namespace}/${name} rollout`, timeoutMs, async () => {
    const d = await apps.readNamespacedDeployment({ namespace, name });
    const want = d.spec?.replicas ?? 1;
    const s = d.status;
    return (
      (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
      s?.updatedReplicas === want &&
      s?.readyReplicas === want &&
      s?.replicas === want
    );
  });
}

async function appPods(): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: NS, labelSelector: `app=${APP}` })).items;
}

/** GET http://HOST/settings from the host (a pod IP: over the bridge; a cluster IP: through kube-proxy). */
async function settingsAt(host: string): Promise<Record<string, string>> {
  const res = await fetch(`http://${host}/settings`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, string>;
}

function expectedHashes(): Record<string, string> {
  return { DATABASE_URL: sha256(values.DATABASE_URL), JWT_SECRET_KEY: sha256(values.JWT_SECRET_KEY) };
}

/** A busybox pod that sleeps (opted in only if `labels` say so). */
function plainPod(name: string, labels: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, labels },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "main", image: BUSYBOX, imagePullPolicy: "Never", command: ["sleep", "3600"] }],
    },
  };
}

/** A pod of the example's ServiceAccount that opts in for one of its secrets. */
function optedInPod(name: string): V1Pod {
  const pod = plainPod(name, { "sm-injector.io/inject": "true" });
  (pod.metadata as { annotations?: Record<string, string> }).annotations = {
    "sm-injector.io/env.JWT_SECRET_KEY": JWT,
    "sm-injector.io/region": REGION,
  };
  (pod.spec as { serviceAccountName?: string }).serviceAccountName = APP;
  return pod;
}

async function waitPodReady(name: string): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await waitUntil(`pod ${NS}/${name} Ready`, 60_000, async () => {
    pod = await core.readNamespacedPod({ namespace: NS, name });
    return isPodReady(pod);
  });
  return pod as V1Pod;
}

/** The webhook Deployment scaled to `replicas`; waits until its Service has that many ready endpoints. */
async function scaleWebhook(n: RealNode, replicas: number): Promise<void> {
  await apps.patchNamespacedDeploymentScale(
    { namespace: RELEASE_NS, name: "sm-injector", body: { spec: { replicas } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
  const discovery = n.kubeConfig.makeApiClient(DiscoveryV1Api);
  await waitUntil(`the webhook's Service to have ${replicas} ready endpoints`, 120_000, async () => {
    const slices = await discovery.listNamespacedEndpointSlice({
      namespace: RELEASE_NS,
      labelSelector: "kubernetes.io/service-name=sm-injector",
    });
    const ready = slices.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready));
    const pods = await core.listNamespacedPod({
      namespace: RELEASE_NS,
      labelSelector: "app.kubernetes.io/name=sm-injector",
    });
    return ready.length === replicas && pods.items.length === replicas;
  });
}

/** `sm-injector rotation --once` from dist/ on the host, as admin, against moto's DescribeSecret. */
async function rotationOnce(n: RealNode): Promise<string> {
  const r = await run(
    process.execPath,
    [
      CLI,
      "rotation",
      "--once",
      "--kubeconfig",
      n.kubeconfigPath,
      "--namespace",
      NS,
      "--min-restart-interval-seconds",
      "0",
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        ...TEST_CREDENTIALS,
        AWS_ENDPOINT_URL: moto.endpoint,
        AWS_REGION: REGION,
      },
      encoding: "utf8",
    },
  );
  const output = `${r.stdout}${r.stderr}`;
  for (const v of Object.values(values)) assert.equal(output.includes(v), false, "no value in its output");
  return output;
}

describe("the example FastAPI Deployment on the real node", { skip }, () => {
  const node = useRealNode({ before, after }, { setup: setUp });
  after(() => moto?.stop());

  test("rolled out by the real controllers, injected, IRSA with the kubelet's token: /settings hashes match moto", async () => {
    if (typeof exampleAppImage === "string") return;
    const t0 = performance.now();
    await applyExample(exampleAppImage.name);
    await waitForRollout(APP, NS);
    process.stderr.write(
      `example Deployment applied → 2 replicas Ready in ${Math.round(performance.now() - t0)} ms\n`,
    );
    const pods = await appPods();
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      assert.equal(pod.metadata?.ownerReferences?.[0]?.kind, "ReplicaSet");
      const init = pod.spec?.initContainers?.find((c) => c.name === "sm-injector-fetch");
      assert.equal(init?.image, (injectorImage as ImageArchive).name, "injected by the chart's webhook");
      const initEnv = new Map((init?.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(initEnv.get("AWS_ROLE_ARN"), "arn:aws:iam::123456789012:role/erp-api");
      assert.ok(initEnv.get("AWS_WEB_IDENTITY_TOKEN_FILE"), "IRSA: the projected token");
      assert.equal(initEnv.has("AWS_ACCESS_KEY_ID"), false, "no static credentials");
      // Over the pod network, from the host: each replica loaded both settings.
      assert.deepEqual(await settingsAt(`${pod.status?.podIP}:8000`), expectedHashes());
    }
    // Through the Service's cluster IP (kube-proxy's rules for host traffic).
    const svc = await core.readNamespacedService({ namespace: NS, name: APP });
    assert.deepEqual(await settingsAt(`${svc.spec?.clusterIP}:80`), expectedHashes());
  });

  test("a pod reaches the app by the Service's DNS name (CoreDNS) and cluster IP (kube-proxy)", async () => {
    const name = "client";
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        ...plainPod(name),
        spec: {
          restartPolicy: "Never",
          containers: [
            {
              name: "main",
              image: BUSYBOX,
              imagePullPolicy: "Never",
              command: ["wget", "-q", "-O", "-", `http://${APP}.${NS}.svc.cluster.local/settings`],
            },
          ],
        },
      },
    });
    await waitUntil("the client pod to finish", 60_000, async () => {
      const p = await core.readNamespacedPod({ namespace: NS, name });
      return p.status?.phase === "Succeeded" || p.status?.phase === "Failed";
    });
    const log = await core.readNamespacedPodLog({ namespace: NS, name, container: "main" });
    assert.deepEqual(JSON.parse(log), expectedHashes());
    await core.deleteNamespacedPod({ namespace: NS, name, gracePeriodSeconds: 0 });
  });

  test("webhook scaled to zero: a pod that did not opt in starts, an opted-in one is refused", async () => {
    const n = node();
    try {
      await scaleWebhook(n, 0);
      await core.createNamespacedPod({ namespace: NS, body: plainPod("plain") });
      await waitPodReady("plain");
      const refused = await core
        .createNamespacedPod({ namespace: NS, body: optedInPod("opted-in") })
        .then(() => undefined, apiError);
      assert.ok(refused, "the opted-in pod was admitted without the webhook");
      process.stderr.write(
        `webhook at zero replicas, opted-in pod refused: ${refused.code} ${refused.message}\n`,
      );
      assert.equal(refused.code, 500, refused.message);
      assert.match(refused.message, /failed calling webhook "inject\.sm-injector\.io"/);
    } finally {
      await scaleWebhook(n, 2);
    }
    // Back: an opted-in pod is injected again (once kube-proxy has the new endpoints: retried).
    let again: V1Pod | undefined;
    await waitUntil("the webhook to admit an opted-in pod again", 30_000, async () => {
      again = await core.createNamespacedPod({ namespace: NS, body: optedInPod("opted-in-again") });
      return true;
    });
    assert.ok(again?.spec?.initContainers?.some((c) => c.name === "sm-injector-fetch"));
    await core.deleteNamespacedPod({ namespace: NS, name: "opted-in-again", gracePeriodSeconds: 0 });
    await core.deleteNamespacedPod({ namespace: NS, name: "plain", gracePeriodSeconds: 0 });
  });

  test("rotation: a new AWSCURRENT → a real rolling update; new pods load it; the PDB (minAvailable 1) holds", async () => {
    const n = node();
    const before = new Set((await appPods()).map((p) => p.metadata?.uid));
    values.JWT_SECRET_KEY = `jwt-v2-${process.pid}`;
    await moto.putSecretValue(JWT, values.JWT_SECRET_KEY);
    const t0 = performance.now();
    const output = await rotationOnce(n);
    const d = await apps.readNamespacedDeployment({ namespace: NS, name: APP });
    assert.ok(d.spec?.template.metadata?.annotations?.["rotation.sm-injector.io/restarted-at"], output);

    // Sample the Ready, not terminating pods while the Deployment rolls (every 100 ms).
    let minReady = Number.POSITIVE_INFINITY;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ready = (await appPods()).filter((p) => isPodReady(p) && !p.metadata?.deletionTimestamp);
        minReady = Math.min(minReady, ready.length);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      await waitForRollout(APP, NS);
      await waitUntil("the old pods to be gone", 60_000, async () =>
        (await appPods()).every((p) => !before.has(p.metadata?.uid)),
      );
    } finally {
      sampling = false;
      await sampler;
    }
    process.stderr.write(
      `rotation: new version → rolled out in ${Math.round(performance.now() - t0)} ms; fewest Ready during the roll: ${minReady}\n`,
    );
    assert.ok(minReady >= 1, `the PodDisruptionBudget's minAvailable 1 was violated: ${minReady} Ready`);
    const pods = await appPods();
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      assert.deepEqual(await settingsAt(`${pod.status?.podIP}:8000`), expectedHashes());
    }
  });

  test("files format with fsGroup (examples/fastapi-secrets-dir.yaml's shape): pydantic-settings secrets_dir in two containers of different users", async () => {
    if (typeof exampleAppImage === "string") return;
    // Prints the uid, groups, the sha256 of each setting (never a value) and each file's mode and group.
    const program = [
      "import hashlib, json, os",
      "from pydantic_settings import BaseSettings, SettingsConfigDict",
      "class Settings(BaseSettings):",
      '    model_config = SettingsConfigDict(secrets_dir=os.environ["SM_INJECTOR_SECRETS_DIR"])',
      "    database_url: str",
      "    jwt_secret_key: str",
      "s = {k: 'sha256:' + hashlib.sha256(v.encode()).hexdigest() for k, v in Settings().model_dump().items()}",
      'd = os.environ["SM_INJECTOR_SECRETS_DIR"]',
      "f = {n: [os.stat(os.path.join(d, n)).st_mode & 0o777, os.stat(os.path.join(d, n)).st_gid] for n in os.listdir(d)}",
      'print(json.dumps({"uid": os.getuid(), "groups": os.getgroups(), "settings": s, "files": f}))',
    ].join("\n");
    const container = (name: string, uid: number) => ({
      name,
      image: exampleAppImage.name,
      imagePullPolicy: "Never",
      command: ["python3", "-c", program],
      env: [{ name: "AWS_ENDPOINT_URL", value: `http://${POD_GATEWAY}:${moto.port}` }],
      securityContext: { runAsUser: uid, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
    });
    const name = "erp-files";
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: {
          name,
          labels: { "sm-injector.io/inject": "true" },
          annotations: {
            "sm-injector.io/format": "files",
            "sm-injector.io/output-dir": "/run/secrets/app",
            "sm-injector.io/region": REGION,
            "sm-injector.io/env.database_url": `${DB}#DATABASE_URL`,
            "sm-injector.io/env.jwt_secret_key": JWT,
          },
        },
        spec: {
          serviceAccountName: APP,
          restartPolicy: "Never",
          securityContext: { runAsNonRoot: true, fsGroup: 3000, seccompProfile: { type: "RuntimeDefault" } },
          containers: [container("api", 1001), container("worker", 1002)],
        },
      },
    });
    let pod: V1Pod | undefined;
    await waitUntil("the files pod to finish", 90_000, async () => {
      pod = await core.readNamespacedPod({ namespace: NS, name });
      return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
    });
    assert.equal(pod?.status?.phase, "Succeeded", JSON.stringify(pod?.status?.containerStatuses));
    for (const [c, uid] of [
      ["api", 1001],
      ["worker", 1002],
    ] as const) {
      const out = JSON.parse(await core.readNamespacedPodLog({ namespace: NS, name, container: c }));
      assert.equal(out.uid, uid);
      assert.ok(out.groups.includes(3000), "the pod's fsGroup is a supplementary group");
      assert.deepEqual(out.settings, {
        database_url: sha256(values.DATABASE_URL),
        // pydantic-settings strips a secret file's surrounding whitespace (its own behaviour).
        jwt_secret_key: sha256(values.JWT_SECRET_KEY.trim()),
      });
      // On the kubelet's tmpfs, group-readable through the pod's fsGroup only.
      assert.deepEqual(out.files, { database_url: [0o440, 3000], jwt_secret_key: [0o440, 3000] });
    }
    await core.deleteNamespacedPod({ namespace: NS, name, gracePeriodSeconds: 0 });
  });
});
