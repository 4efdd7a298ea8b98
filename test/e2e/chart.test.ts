// The chart against a real kube-apiserver (the control-plane test bed): every rendered object is
// accepted by the API server (server-side dry run, like `kubectl apply --dry-run=server`), the pods
// pass Pod Security "restricted", `helm install` + `helm upgrade` reuse the generated certificate
// (lookup), the ClusterRole is enough for the webhook and no more, the `helm test` script passes
// against the real webhook, and the plain manifests + scripts/gen-webhook-certs.sh work with kubectl.
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  KubernetesObjectApi,
} from "@kubernetes/client-node";
import {
  CHART_DIR,
  type K8sObject,
  parseManifests,
  REPO_ROOT,
  renderChart,
  runHelm,
} from "../helpers/tools.ts";
import { generateCA, generateCert } from "./harness/certs.ts";
import { type ControlPlane, startControlPlane } from "./harness/controlplane.ts";
import { getFreePort } from "./harness/ports.ts";
import { type ManagedProcess, spawnManaged, waitForHttp } from "./harness/process.ts";
import { renderWebhookConfiguration } from "./webhook-config.ts";

const execFileAsync = promisify(execFile);
const NS = "sm-injector";
const BUNDLE = process.env.SM_INJECTOR_BUNDLE ?? path.join(REPO_ROOT, "dist", "sm-injector.mjs");

let cp: ControlPlane;
let objects: KubernetesObjectApi;
let core: CoreV1Api;

function apiMessage(e: unknown): string {
  const body = (e as { body?: unknown }).body;
  try {
    const status = typeof body === "string" ? JSON.parse(body) : body;
    if (status && typeof status === "object" && "message" in status) return String(status.message);
  } catch {
    // not JSON
  }
  return (e as Error).message;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The CRDs of cert-manager (Issuer, Certificate) and the Prometheus Operator (ServiceMonitor) are not
 * part of the test API server. These minimal stand-ins (right group, kinds, scope and versions, any
 * spec) let the API server check everything but the CRD-specific schema of those objects.
 */
function minimalCrd(group: string, kind: string, plural: string): object {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: "Namespaced",
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
        },
      ],
    },
  };
}

before(async () => {
  cp = await startControlPlane();
  objects = KubernetesObjectApi.makeApiClient(cp.kubeConfig);
  core = cp.kubeConfig.makeApiClient(CoreV1Api);
  // The release namespace enforces Pod Security "restricted", like manifests/sm-injector.yaml's.
  await core.createNamespace({
    body: {
      metadata: {
        name: NS,
        labels: {
          "pod-security.kubernetes.io/enforce": "restricted",
          "pod-security.kubernetes.io/enforce-version": "latest",
        },
      },
    },
  });
  // No controller-manager: create the default ServiceAccount the helm test pod runs as.
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: "default" } } });
  const ext = cp.kubeConfig.makeApiClient(ApiextensionsV1Api);
  for (const crd of [
    minimalCrd("cert-manager.io", "Issuer", "issuers"),
    minimalCrd("cert-manager.io", "Certificate", "certificates"),
    minimalCrd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
  ]) {
    await ext.createCustomResourceDefinition({ body: crd as never });
  }
  for (const name of [
    "issuers.cert-manager.io",
    "certificates.cert-manager.io",
    "servicemonitors.monitoring.coreos.com",
  ]) {
    for (let i = 0; ; i++) {
      const crd = await ext.readCustomResourceDefinition({ name });
      if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
      assert.ok(i < 100, `CRD ${name} not established`);
      await sleep(100);
    }
  }
});

after(async () => {
  await cp?.stop();
});

/** Server-side dry run of every object; returns "Kind/name: message" for each refusal. */
async function dryRunAll(objs: K8sObject[]): Promise<string[]> {
  const refused: string[] = [];
  for (const o of objs) {
    try {
      await objects.create(o, undefined, "All");
    } catch (e) {
      refused.push(`${o.kind}/${o.metadata.name}: ${apiMessage(e)}`);
    }
  }
  return refused;
}

describe("every rendered object is accepted by the API server (server-side dry run)", () => {
  const renders: [string, Record<string, string | number | boolean>, string[]][] = [
    ["defaults", {}, ["Deployment", "MutatingWebhookConfiguration", "Secret", "Pod"]],
    ["networkPolicy.enabled", { "networkPolicy.enabled": true }, ["NetworkPolicy"]],
    [
      "networkPolicy with peers, CIDRs and extra egress",
      {
        "networkPolicy.enabled": true,
        "networkPolicy.ingressFrom[0].ipBlock.cidr": "10.0.0.0/8",
        "networkPolicy.apiServer.cidrs[0]": "172.20.0.0/16",
        "networkPolicy.extraEgress[0].ports[0].port": 4318,
      },
      ["NetworkPolicy"],
    ],
    ["tls.mode=certManager (stand-in CRDs)", { "tls.mode": "certManager" }, ["Issuer", "Certificate"]],
    ["serviceMonitor.enabled (stand-in CRD)", { "serviceMonitor.enabled": true }, ["ServiceMonitor"]],
    ["tls.mode=manual", { "tls.mode": "manual" }, ["MutatingWebhookConfiguration"]],
    [
      "rotation.enabled",
      { "rotation.enabled": true, "rotation.region": "eu-west-1" },
      ["ClusterRoleBinding"],
    ],
    [
      "rotation.enabled in one namespace",
      { "rotation.enabled": true, "rotation.namespace": "default" },
      ["Role", "RoleBinding"],
    ],
    [
      "replicaCount=3 with extra namespace selector terms",
      {
        replicaCount: 3,
        "webhook.excludeNamespaces[0]": "legacy",
        "webhook.namespaceSelector.matchLabels.team": "erp",
        "podDisruptionBudget.maxUnavailable": "50%",
      },
      ["PodDisruptionBudget"],
    ],
  ];
  for (const [name, set, expectKinds] of renders) {
    test(name, async () => {
      const objs = await renderChart(set);
      for (const kind of expectKinds)
        assert.ok(
          objs.some((o) => o.kind === kind),
          `${kind} rendered`,
        );
      assert.deepEqual(await dryRunAll(objs), []);
    });
  }

  test("a bad object is refused (the dry run really validates)", async () => {
    const objs = await renderChart();
    const dep = structuredClone(objs.find((o) => o.kind === "Deployment") as K8sObject);
    dep.spec.template.spec.containers[0].ports[0].containerPort = 70000;
    const [refusal] = await dryRunAll([dep]);
    assert.match(refusal ?? "", /containerPort/);
  });
});

test('the webhook pods and the helm test pod pass Pod Security "restricted" (enforced on Pods)', async () => {
  const objs = await renderChart();
  const dep = objs.find((o) => o.kind === "Deployment") as K8sObject;
  const testPod = objs.find((o) => o.kind === "Pod") as K8sObject;
  const podFromTemplate = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { ...dep.spec.template.metadata, name: "webhook-pod", namespace: NS },
    spec: { ...dep.spec.template.spec, serviceAccountName: "default" },
  };
  assert.deepEqual(await dryRunAll([podFromTemplate as K8sObject, testPod]), []);
  // And the namespace really enforces it: hostNetwork is refused.
  const [refusal] = await dryRunAll([
    { ...podFromTemplate, spec: { ...podFromTemplate.spec, hostNetwork: true } } as K8sObject,
  ]);
  assert.match(refusal ?? "", /violates PodSecurity "restricted/);
});

const RELEASE = "upgrade-test";
const RELEASE_NS = "upgrade-ns";
const FULLNAME = `${RELEASE}-sm-injector`;
const helm = (...args: string[]) =>
  runHelm([...args, "--kubeconfig", cp.kubeconfigPath]).then((r) => {
    assert.equal(r.code, 0, `helm ${args.join(" ")}: ${r.stderr}`);
    return r;
  });

describe("helm install + upgrade: the generated certificate is reused (lookup)", () => {
  const apps = () => cp.kubeConfig.makeApiClient(AppsV1Api);
  const admission = () => cp.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const state = async () => {
    const secret = await core.readNamespacedSecret({ namespace: RELEASE_NS, name: `${FULLNAME}-tls` });
    const mwc = await admission().readMutatingWebhookConfiguration({ name: FULLNAME });
    const dep = await apps().readNamespacedDeployment({ namespace: RELEASE_NS, name: FULLNAME });
    return {
      data: secret.data ?? {},
      caBundle: mwc.webhooks?.[0]?.clientConfig.caBundle,
      checksum: dep.spec?.template.metadata?.annotations?.["checksum/tls"],
    };
  };

  test("install, upgrade twice: same Secret, same caBundle, pods not rolled; regenerated only when deleted", async () => {
    // Its MutatingWebhookConfiguration is real but has no webhook behind it: keep it away from the
    // pods the later tests create (a namespace label nothing carries).
    const install = await helm(
      "install",
      RELEASE,
      CHART_DIR,
      "--namespace",
      RELEASE_NS,
      "--create-namespace",
      "--set",
      "webhook.namespaceSelector.matchLabels.sm-injector-e2e=none",
    );
    // NOTES.txt: how to check the install and how to opt a pod in.
    assert.match(install.stdout, /NOTES:/);
    assert.match(install.stdout, new RegExp(`helm test ${RELEASE} -n ${RELEASE_NS}`));
    assert.match(install.stdout, /sm-injector\.io\/inject: "true"/);
    assert.match(install.stdout, /sm-injector\.io\/env\.JWT_SECRET_KEY: erp\/staging\/jwt\/secret_key/);
    if (process.env.SM_INJECTOR_SHOW_NOTES === "1") process.stderr.write(install.stdout);
    const installed = await state();
    assert.ok(installed.data["ca.crt"] && installed.data["tls.crt"] && installed.data["tls.key"]);
    assert.equal(installed.caBundle, installed.data["ca.crt"]);

    await helm(
      "upgrade",
      RELEASE,
      CHART_DIR,
      "--namespace",
      RELEASE_NS,
      "--reuse-values",
      "--set",
      "webhook.logLevel=debug",
    );
    await helm(
      "upgrade",
      RELEASE,
      CHART_DIR,
      "--namespace",
      RELEASE_NS,
      "--reuse-values",
      "--set",
      "replicaCount=3",
    );
    const upgraded = await state();
    assert.deepEqual(upgraded, installed, "nothing about TLS changed across upgrades");
    const dep = await apps().readNamespacedDeployment({ namespace: RELEASE_NS, name: FULLNAME });
    assert.equal(dep.spec?.replicas, 3, "the upgrades did apply");

    await core.deleteNamespacedSecret({ namespace: RELEASE_NS, name: `${FULLNAME}-tls` });
    await helm("upgrade", RELEASE, CHART_DIR, "--namespace", RELEASE_NS, "--reuse-values");
    const regenerated = await state();
    assert.notEqual(regenerated.data["ca.crt"], installed.data["ca.crt"]);
    assert.equal(regenerated.caBundle, regenerated.data["ca.crt"], "caBundle follows the new CA");
    assert.notEqual(regenerated.checksum, installed.checksum, "the pods roll to the new certificate");
  });

  test("the ClusterRole: get ServiceAccounts and Namespaces; no list/watch, nothing on Secrets", async () => {
    const authz = cp.kubeConfig.makeApiClient(AuthorizationV1Api);
    const can = async (verb: string, resource: string, namespace = "erp") => {
      const r = await authz.createSubjectAccessReview({
        body: {
          spec: {
            user: `system:serviceaccount:${RELEASE_NS}:${FULLNAME}`,
            groups: [
              "system:serviceaccounts",
              `system:serviceaccounts:${RELEASE_NS}`,
              "system:authenticated",
            ],
            resourceAttributes: { verb, resource, namespace, group: "" },
          },
        },
      });
      return r.status?.allowed === true;
    };
    assert.equal(await can("get", "serviceaccounts"), true);
    assert.equal(await can("get", "namespaces", ""), true);
    for (const [verb, resource] of [
      ["get", "secrets"],
      ["list", "secrets"],
      ["list", "serviceaccounts"],
      ["watch", "namespaces"],
      ["get", "pods"],
      ["create", "serviceaccounts/token"],
    ] as const) {
      assert.equal(await can(verb, resource), false, `${verb} ${resource}`);
    }
  });
});

describe("with the real webhook (the bundle) running on the chart's RBAC", () => {
  let webhook: ManagedProcess | undefined;
  let dir = "";
  let port = 0;
  let caPem = "";

  before(async () => {
    if (!existsSync(BUNDLE))
      throw new Error(`${BUNDLE} is missing; run \`npm run build\` first (npm test does)`);
    dir = await mkdtemp(path.join(cp.workDir, "webhook-"));
    // Run as the chart's ServiceAccount (installed above): a token, not the admin certificate.
    const tr = await core.createNamespacedServiceAccountToken({
      namespace: RELEASE_NS,
      name: FULLNAME,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: e2e, cluster: {server: "${cp.apiServerUrl}", certificate-authority-data: ${b64(cp.caCertPem)}}}]`,
        `users: [{name: webhook, user: {token: "${tr.status?.token}"}}]`,
        "contexts: [{name: e2e, context: {cluster: e2e, user: webhook}}]",
        "current-context: e2e",
        "",
      ].join("\n"),
    );
    const ca = await generateCA(dir, "webhook-ca");
    caPem = ca.certPem;
    const serving = await generateCert(dir, ca, { cn: "localhost", sans: ["127.0.0.1", "localhost"] });
    port = await getFreePort();
    webhook = spawnManaged(
      "webhook",
      process.execPath,
      [
        BUNDLE,
        "webhook",
        "--host=127.0.0.1",
        `--port=${port}`,
        `--tls-cert-file=${serving.certPath}`,
        `--tls-key-file=${serving.keyPath}`,
        `--kubeconfig=${kubeconfig}`,
        "--image=registry.example.com/sm-injector:e2e",
        "--default-region=us-east-1",
      ],
      { logPath: path.join(dir, "webhook.log"), env: { PATH: process.env.PATH ?? "" } },
    );
    await waitForHttp(`https://127.0.0.1:${port}/readyz`, { ca: caPem, process: webhook, timeoutMs: 20_000 });
  });

  after(async () => {
    await webhook?.stop();
  });

  /** The script of the chart's helm test pod, run as that pod would, against `host`. */
  async function runHelmTestScript(env: Record<string, string>) {
    const objs = await renderChart({}, { namespace: RELEASE_NS, release: RELEASE });
    const pod = objs.find((o) => o.kind === "Pod" && o.metadata.annotations?.["helm.sh/hook"] === "test");
    assert.ok(pod);
    const c = pod.spec.containers[0];
    assert.deepEqual(c.command, ["node", "-e"]);
    const podEnv = Object.fromEntries(c.env.map((e: K8sObject) => [e.name, e.value]));
    return spawnSync(process.execPath, ["-e", c.args[0]], {
      env: { PATH: process.env.PATH ?? "", ...podEnv, ...env },
      encoding: "utf8",
      timeout: 30_000,
    });
  }

  test("the helm test script passes (TLS verified, /healthz, /readyz, a dry-run admission with look-ups)", async () => {
    const r = await runHelmTestScript({
      SM_TEST_HOST: "localhost",
      SM_TEST_PORT: String(port),
      SM_TEST_CA_BUNDLE: Buffer.from(caPem).toString("base64"),
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /GET https:\/\/localhost:\d+\/readyz: 200, certificate verified/);
    assert.match(r.stdout, /POST \/mutate: an opted-in pod gets the sm-injector-fetch init container/);
  });

  test("the helm test script fails against a certificate from another CA", async () => {
    const other = await generateCA(path.join(dir, "other"), "other-ca");
    const r = await runHelmTestScript({
      SM_TEST_HOST: "localhost",
      SM_TEST_PORT: String(port),
      SM_TEST_CA_BUNDLE: Buffer.from(other.certPem).toString("base64"),
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /sm-injector helm test failed: .*certificate/i);
  });

  test("renderWebhookConfiguration: the chart's configuration, registered by URL, injects opted-in pods only", async () => {
    const config = await renderWebhookConfiguration({
      url: `https://127.0.0.1:${port}`,
      caBundlePem: caPem,
      namespace: "sm-injector-e2e-release",
    });
    assert.equal(config.webhooks[0]?.clientConfig.url, `https://127.0.0.1:${port}/mutate`);
    assert.equal(config.webhooks[0]?.clientConfig.service, undefined);
    const admission = cp.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    await admission.createMutatingWebhookConfiguration({ body: config as never });
    try {
      await core.createNamespace({ body: { metadata: { name: "apps" } } });
      await core.createNamespacedServiceAccount({
        namespace: "apps",
        body: { metadata: { name: "default" } },
      });
      const spec = { containers: [{ name: "app", image: "registry.example.com/app:1", command: ["true"] }] };
      let injected: Awaited<ReturnType<CoreV1Api["createNamespacedPod"]>> | undefined;
      // The API server picks up a new webhook configuration asynchronously.
      for (let i = 0; i < 50 && !injected?.spec?.initContainers?.length; i++) {
        if (injected)
          await core.deleteNamespacedPod({ namespace: "apps", name: "opted-in", gracePeriodSeconds: 0 });
        if (i > 0) await sleep(100);
        injected = await core.createNamespacedPod({
          namespace: "apps",
          body: {
            metadata: {
              name: "opted-in",
              labels: { "sm-injector.io/inject": "true" },
              annotations: { "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key" },
            },
            spec,
          },
        });
      }
      assert.deepEqual(
        injected?.spec?.initContainers?.map((c) => c.name),
        ["sm-injector-fetch"],
      );
      const plain = await core.createNamespacedPod({
        namespace: "apps",
        body: { metadata: { name: "plain" }, spec },
      });
      assert.equal(plain.spec?.initContainers, undefined);
    } finally {
      await admission.deleteMutatingWebhookConfiguration({ name: config.metadata.name });
    }
  });
});

describe("plain manifests + scripts/gen-webhook-certs.sh with kubectl", () => {
  const hasKubectl = spawnSync("kubectl", ["version", "--client"]).status === 0;
  const skip = hasKubectl ? false : "kubectl is not installed";
  const env = () => ({ ...process.env, KUBECONFIG: cp.kubeconfigPath });
  const genCerts = (...args: string[]) =>
    execFileAsync("bash", [path.join(REPO_ROOT, "scripts", "gen-webhook-certs.sh"), ...args], { env: env() });

  test("before the manifests are applied, the script says so", { skip }, async () => {
    await assert.rejects(genCerts(), /apply the manifests first/);
  });

  test("kubectl apply, then the script: Secret + caBundle; idempotent; --force renews", {
    skip,
  }, async () => {
    await helm("uninstall", RELEASE, "--namespace", RELEASE_NS);
    await execFileAsync("kubectl", ["apply", "-f", path.join(REPO_ROOT, "manifests", "sm-injector.yaml")], {
      env: env(),
    });
    const admission = cp.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    const read = async () => {
      const secret = await core.readNamespacedSecret({ namespace: NS, name: "sm-injector-tls" });
      const mwc = await admission.readMutatingWebhookConfiguration({ name: "sm-injector" });
      return {
        data: secret.data ?? {},
        type: secret.type,
        caBundle: mwc.webhooks?.[0]?.clientConfig.caBundle,
      };
    };
    assert.equal(
      (await admission.readMutatingWebhookConfiguration({ name: "sm-injector" })).webhooks?.[0]?.clientConfig
        .caBundle,
      undefined,
    );

    await genCerts();
    const first = await read();
    assert.equal(first.type, "kubernetes.io/tls");
    const pem = (k: string) => Buffer.from(first.data[k] ?? "", "base64").toString("utf8");
    const ca = new X509Certificate(pem("ca.crt"));
    const crt = new X509Certificate(pem("tls.crt"));
    assert.ok(ca.ca && crt.verify(ca.publicKey), "tls.crt is signed by ca.crt");
    assert.ok(crt.checkPrivateKey(createPrivateKey(pem("tls.key"))));
    for (const name of ["sm-injector.sm-injector.svc", "sm-injector.sm-injector.svc.cluster.local"]) {
      assert.ok(crt.checkHost(name), name);
    }
    assert.equal(first.caBundle, first.data["ca.crt"]);

    // Re-applying the manifests keeps the caBundle; re-running the script changes nothing.
    await execFileAsync("kubectl", ["apply", "-f", path.join(REPO_ROOT, "manifests", "sm-injector.yaml")], {
      env: env(),
    });
    await genCerts();
    assert.deepEqual(await read(), first);

    await genCerts("--force");
    const renewed = await read();
    assert.notEqual(renewed.data["ca.crt"], first.data["ca.crt"]);
    assert.equal(renewed.caBundle, renewed.data["ca.crt"]);
  });

  test("every object of the manifests now exists in the cluster", { skip }, async () => {
    const text = await readFile(path.join(REPO_ROOT, "manifests", "sm-injector.yaml"), "utf8");
    const missing: string[] = [];
    for (const o of parseManifests(text)) {
      try {
        await objects.read(o);
      } catch (e) {
        missing.push(`${o.kind}/${o.metadata.name}: ${apiMessage(e)}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});
