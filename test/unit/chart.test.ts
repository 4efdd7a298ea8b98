// The Helm chart, rendered by the pinned helm (scripts/build-binaries.sh): lint, the objects for the
// value combinations users choose between, the schema, the documented values, and the generated
// plain manifests. The API server's view of the same objects is in test/e2e/chart.test.ts.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { isMap, isScalar, parseDocument, type YAMLMap } from "yaml";
import { loadWebhookConfig, WEBHOOK_FLAGS } from "../../src/webhook/config.ts";
import { generateCA } from "../e2e/harness/certs.ts";
import {
  CHART_DIR,
  helmPath,
  helmTemplate,
  type K8sObject,
  parseManifests,
  REPO_ROOT,
  renderChart,
  runHelm,
} from "../helpers/tools.ts";

const execFileAsync = promisify(execFile);
const NS = "sm-injector";
const SERVICE_DNS = ["sm-injector", "sm-injector.sm-injector", "sm-injector.sm-injector.svc"];

function find(objs: K8sObject[], kind: string, name?: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(
    o,
    `no ${kind}${name ? ` ${name}` : ""} in the render (got ${objs.map((x) => x.kind).join(", ")})`,
  );
  return o;
}
const all = (objs: K8sObject[], kind: string) => objs.filter((x) => x.kind === kind);
const kinds = (objs: K8sObject[]) => objs.map((o) => o.kind).sort();

interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
/** Kubernetes label-selector semantics. */
function selects(sel: Selector, labels: Record<string, string> = {}): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key] as string;
    const ok =
      e.operator === "In"
        ? has && (e.values ?? []).includes(value)
        : e.operator === "NotIn"
          ? !has || !(e.values ?? []).includes(value)
          : e.operator === "Exists"
            ? has
            : e.operator === "DoesNotExist"
              ? !has
              : assert.fail(`operator ${e.operator}`);
    if (!ok) return false;
  }
  return true;
}

const webhookOf = (objs: K8sObject[]) => {
  const mwc = find(objs, "MutatingWebhookConfiguration");
  assert.equal(mwc.webhooks.length, 1);
  return { mwc, wh: mwc.webhooks[0] };
};
const podTemplate = (objs: K8sObject[]) => find(objs, "Deployment").spec.template;
const webhookContainer = (objs: K8sObject[]) => podTemplate(objs).spec.containers[0];
const argValue = (args: string[], flag: string) =>
  args.find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);
const certManagerObjects = (objs: K8sObject[]) =>
  objs.filter((o) => o.apiVersion.startsWith("cert-manager.io/"));
const hasCertManagerAnnotation = (objs: K8sObject[]) =>
  objs.some((o) => Object.keys(o.metadata.annotations ?? {}).some((k) => k.startsWith("cert-manager.io/")));

function assertRestrictedContainer(c: K8sObject, where: string) {
  const sc = c.securityContext ?? {};
  assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
  assert.deepEqual(sc.capabilities?.drop, ["ALL"], `${where}: capabilities.drop`);
  assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  assert.notEqual(sc.privileged, true, `${where}: privileged`);
}
function assertRestrictedPod(spec: K8sObject, where: string) {
  assert.equal(spec.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
  assert.equal(spec.securityContext?.seccompProfile?.type, "RuntimeDefault", `${where}: seccomp`);
  assert.notEqual(spec.hostNetwork, true, `${where}: hostNetwork`);
  for (const c of spec.containers) assertRestrictedContainer(c, `${where}/${c.name}`);
}

describe("helm lint", () => {
  const combos: Record<string, string>[] = [
    {},
    { "tls.mode": "certManager" },
    {
      "tls.mode": "certManager",
      "tls.certManager.issuerRef.name": "corp-ca",
      "tls.certManager.issuerRef.kind": "ClusterIssuer",
    },
    { "tls.mode": "manual" },
    { "networkPolicy.enabled": "true", "serviceMonitor.enabled": "true" },
    { replicaCount: "3" },
  ];
  for (const set of combos) {
    test(`clean with --strict: ${JSON.stringify(set)}`, async () => {
      const args = Object.entries(set).flatMap(([k, v]) => ["--set", `${k}=${v}`]);
      for (const strict of [[], ["--strict"]]) {
        const r = await runHelm(["lint", CHART_DIR, "--namespace", NS, ...strict, ...args]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/, r.stdout);
        assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      }
    });
  }
});

test("Chart.yaml: kubeVersion >=1.29, appVersion is the package version", async () => {
  const chart = parseDocument(await readFile(path.join(CHART_DIR, "Chart.yaml"), "utf8")).toJS();
  const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, "package.json"), "utf8"));
  assert.equal(chart.apiVersion, "v2");
  assert.equal(chart.kubeVersion, ">=1.29.0-0");
  assert.equal(chart.appVersion, pkg.version);
  const old = await runHelm(["template", "x", CHART_DIR, "--kube-version", "1.28.9"]);
  assert.notEqual(old.code, 0, "a 1.28 cluster is refused");
  assert.match(old.stderr, /kubeVersion/);
});

describe("default values", async () => {
  const objs = await renderChart();

  test("the objects: no NetworkPolicy, ServiceMonitor or cert-manager objects", () => {
    assert.deepEqual(kinds(objs), [
      "ClusterRole",
      "ClusterRoleBinding",
      "Deployment",
      "MutatingWebhookConfiguration",
      "Pod",
      "PodDisruptionBudget",
      "Secret",
      "Service",
      "ServiceAccount",
    ]);
    assert.deepEqual(certManagerObjects(objs), []);
    assert.equal(hasCertManagerAnnotation(objs), false);
    for (const o of objs) {
      const clusterScoped = ["ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"].includes(
        o.kind,
      );
      assert.equal(o.metadata.namespace, clusterScoped ? undefined : NS, `${o.kind} namespace`);
    }
  });

  test("MutatingWebhookConfiguration: fail closed, opt-in only, never the system or its own namespace", () => {
    const { wh } = webhookOf(objs);
    assert.equal(wh.name, "inject.sm-injector.io");
    assert.deepEqual(wh.admissionReviewVersions, ["v1"]);
    assert.equal(wh.sideEffects, "None");
    assert.equal(wh.failurePolicy, "Fail");
    assert.equal(wh.matchPolicy, "Equivalent");
    assert.equal(wh.reinvocationPolicy, "IfNeeded");
    assert.equal(wh.timeoutSeconds, 5);
    assert.deepEqual(wh.rules, [
      {
        operations: ["CREATE"],
        apiGroups: [""],
        apiVersions: ["v1"],
        resources: ["pods"],
        scope: "Namespaced",
      },
    ]);
    const svc = find(objs, "Service");
    assert.deepEqual(wh.clientConfig.service, {
      name: svc.metadata.name,
      namespace: NS,
      path: "/mutate",
      port: svc.spec.ports[0].port,
    });
    // objectSelector: the opt-in label, and never the webhook's own pods.
    const own = podTemplate(objs).metadata.labels;
    assert.equal(selects(wh.objectSelector, { app: "api", "sm-injector.io/inject": "true" }), true);
    assert.equal(selects(wh.objectSelector, { app: "api" }), false);
    assert.equal(selects(wh.objectSelector, { app: "api", "sm-injector.io/inject": "false" }), false);
    assert.equal(selects(wh.objectSelector, own), false);
    assert.equal(selects(wh.objectSelector, { ...own, "sm-injector.io/inject": "true" }), false);
    // namespaceSelector: everything but the system namespaces and the release namespace.
    for (const ns of ["kube-system", "kube-public", "kube-node-lease", NS]) {
      assert.equal(selects(wh.namespaceSelector, { "kubernetes.io/metadata.name": ns }), false, ns);
    }
    assert.equal(selects(wh.namespaceSelector, { "kubernetes.io/metadata.name": "erp" }), true);
  });

  test("generated TLS: one Secret with CA + serving cert; caBundle is its ca.crt; checksum annotation", () => {
    const secret = find(objs, "Secret");
    assert.equal(secret.type, "kubernetes.io/tls");
    const pem = (k: string) => Buffer.from(secret.data[k], "base64").toString("utf8");
    const ca = new X509Certificate(pem("ca.crt"));
    const crt = new X509Certificate(pem("tls.crt"));
    assert.equal(ca.ca, true);
    assert.equal(crt.ca, false);
    assert.ok(crt.checkIssued(ca) && crt.verify(ca.publicKey), "tls.crt is signed by ca.crt");
    assert.ok(crt.checkPrivateKey(createPrivateKey(pem("tls.key"))), "tls.key belongs to tls.crt");
    for (const name of [...SERVICE_DNS, "sm-injector.sm-injector.svc.cluster.local"]) {
      assert.ok(crt.checkHost(name), `certificate valid for ${name} (${crt.subjectAltName})`);
    }
    assert.ok(new Date(crt.validTo).getTime() > Date.now() + 5 * 365 * 86400_000, "long-lived (reused)");
    const { wh } = webhookOf(objs);
    assert.equal(wh.clientConfig.caBundle, secret.data["ca.crt"]);
    const tpl = podTemplate(objs);
    assert.equal(
      tpl.metadata.annotations["checksum/tls"],
      createHash("sha256").update(pem("tls.crt")).digest("hex"),
    );
  });

  test("every replica mounts the one TLS Secret", () => {
    const dep = find(objs, "Deployment");
    assert.equal(dep.spec.replicas, 2);
    const tls = dep.spec.template.spec.volumes.find((v: K8sObject) => v.name === "tls");
    assert.equal(tls.secret.secretName, find(objs, "Secret").metadata.name);
    const c = webhookContainer(objs);
    assert.ok(c.volumeMounts.some((m: K8sObject) => m.name === "tls" && m.readOnly === true));
    assert.equal(argValue(c.args, "tls-cert-file"), "/etc/sm-injector/tls/tls.crt");
    assert.equal(argValue(c.args, "tls-key-file"), "/etc/sm-injector/tls/tls.key");
  });

  test("without a cluster (helm template), every render generates a new CA - as documented", async () => {
    const again = await renderChart();
    assert.notEqual(find(again, "Secret").data["ca.crt"], find(objs, "Secret").data["ca.crt"]);
    const values = await readFile(path.join(CHART_DIR, "values.yaml"), "utf8");
    assert.match(values, /`helm template`/);
    assert.match(values, /REUSES the existing Secret \(lookup\)/);
  });

  test("Deployment: restricted, read-only root, probes over HTTPS, resources, rollout never below replicas", () => {
    const dep = find(objs, "Deployment");
    const spec = dep.spec.template.spec;
    assertRestrictedPod(spec, "webhook pod");
    assert.equal(spec.securityContext.runAsUser, 65532);
    const c = webhookContainer(objs);
    assert.equal(c.image, "ghcr.io/sm-injector/sm-injector:0.1.0");
    assert.equal(c.args[0], "webhook");
    assert.deepEqual(c.ports, [{ name: "https", containerPort: 8443, protocol: "TCP" }]);
    assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "https", scheme: "HTTPS" });
    assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "https", scheme: "HTTPS" });
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    assert.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0);
    assert.equal(spec.priorityClassName, undefined);
    const delay = Number(argValue(c.args, "shutdown-delay-seconds"));
    assert.ok(delay > 0 && delay < spec.terminationGracePeriodSeconds);
    // Pods spread over zones and nodes; the selectors match the pods.
    const labels = dep.spec.template.metadata.labels;
    assert.deepEqual(
      spec.topologySpreadConstraints.map((t: K8sObject) => t.topologyKey),
      ["topology.kubernetes.io/zone", "kubernetes.io/hostname"],
    );
    for (const t of spec.topologySpreadConstraints) assert.ok(selects(t.labelSelector, labels));
    assert.ok(selects(dep.spec.selector, labels));
    const pdb = find(objs, "PodDisruptionBudget");
    assert.ok(selects(pdb.spec.selector, labels));
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.deepEqual(find(objs, "Service").spec.selector, dep.spec.selector.matchLabels);
  });

  test("the webhook accepts every flag the chart passes (parsed by the webhook's own config loader)", () => {
    const args: string[] = webhookContainer(objs).args.slice(1);
    const known = new Set([...Object.keys(WEBHOOK_FLAGS), "shutdown-delay-seconds"]);
    for (const a of args) assert.ok(known.has(a.slice(2, a.indexOf("="))), `unknown webhook flag ${a}`);
    const config = loadWebhookConfig(
      args.filter((a) => !a.startsWith("--shutdown-delay-seconds=")),
      {},
    );
    assert.equal(config.port, 8443);
    assert.equal(config.injector.image, "ghcr.io/sm-injector/sm-injector:0.1.0");
    assert.equal(config.injector.defaultFormat, "shell");
    assert.equal(config.injector.defaultOutputDir, "/run/sm-injector");
    assert.equal(config.injector.defaultRegion, undefined);
    assert.equal(config.injector.allowNodeIdentity, false);
    assert.deepEqual(config.injector.resources, {
      requests: { cpu: "50m", memory: "64Mi" },
      limits: { cpu: "500m", memory: "128Mi" },
    });
  });

  test("RBAC: get ServiceAccounts and Namespaces, nothing else, bound to the webhook's ServiceAccount", () => {
    const role = find(objs, "ClusterRole");
    assert.deepEqual(role.rules, [
      { apiGroups: [""], resources: ["serviceaccounts", "namespaces"], verbs: ["get"] },
    ]);
    const binding = find(objs, "ClusterRoleBinding");
    assert.equal(binding.roleRef.name, role.metadata.name);
    const sa = find(objs, "ServiceAccount");
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: NS }]);
    assert.equal(podTemplate(objs).spec.serviceAccountName, sa.metadata.name);
  });

  test("helm test hook: a restricted Pod with only the CA, never selected by the Service", () => {
    const pod = find(objs, "Pod");
    assert.equal(pod.metadata.annotations?.["helm.sh/hook"], "test");
    assertRestrictedPod(pod.spec, "test pod");
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.equal(selects({ matchLabels: find(objs, "Service").spec.selector }, pod.metadata.labels), false);
    assert.deepEqual(pod.spec.volumes[0].secret.items, [{ key: "ca.crt", path: "ca.crt" }]);
    assert.deepEqual(pod.spec.containers[0].command, ["node", "-e"]);
    const env = Object.fromEntries(pod.spec.containers[0].env.map((e: K8sObject) => [e.name, e.value]));
    assert.equal(env.SM_TEST_HOST, "sm-injector.sm-injector.svc");
    assert.equal(env.SM_TEST_PORT, "443");
  });
});

describe("tls.mode=certManager", async () => {
  const objs = await renderChart({ "tls.mode": "certManager" });

  test("self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate; caBundle injected from the CA", () => {
    const [selfSigned, caIssuer] = [
      find(objs, "Issuer", "sm-injector-selfsigned"),
      find(objs, "Issuer", "sm-injector-ca"),
    ];
    assert.deepEqual(selfSigned.spec, { selfSigned: {} });
    const ca = find(objs, "Certificate", "sm-injector-ca");
    assert.equal(ca.spec.isCA, true);
    assert.equal(ca.spec.issuerRef.name, selfSigned.metadata.name);
    assert.equal(ca.spec.privateKey.rotationPolicy, "Never");
    assert.equal(caIssuer.spec.ca.secretName, ca.spec.secretName);
    const serving = find(objs, "Certificate", "sm-injector");
    assert.equal(serving.spec.issuerRef.name, caIssuer.metadata.name);
    assert.deepEqual(serving.spec.dnsNames, [...SERVICE_DNS, "sm-injector.sm-injector.svc.cluster.local"]);
    assert.ok(serving.spec.usages.includes("server auth"));
    const tls = podTemplate(objs).spec.volumes.find((v: K8sObject) => v.name === "tls");
    assert.equal(tls.secret.secretName, serving.spec.secretName);
    const { mwc, wh } = webhookOf(objs);
    assert.equal(mwc.metadata.annotations?.["cert-manager.io/inject-ca-from"], `${NS}/${ca.metadata.name}`);
    assert.equal(wh.clientConfig.caBundle, undefined);
    assert.equal(all(objs, "Secret").length, 0, "no chart-generated Secret");
    assert.equal(podTemplate(objs).metadata.annotations?.["checksum/tls"], undefined);
  });

  test("with an existing issuer: only the serving Certificate, CA injected from it", async () => {
    const o = await renderChart({
      "tls.mode": "certManager",
      "tls.certManager.issuerRef.name": "corp-ca",
      "tls.certManager.issuerRef.kind": "ClusterIssuer",
    });
    assert.deepEqual(
      certManagerObjects(o).map((x) => `${x.kind}/${x.metadata.name}`),
      ["Certificate/sm-injector"],
    );
    assert.deepEqual(find(o, "Certificate").spec.issuerRef, {
      name: "corp-ca",
      kind: "ClusterIssuer",
      group: "cert-manager.io",
    });
    assert.equal(
      find(o, "MutatingWebhookConfiguration").metadata.annotations?.["cert-manager.io/inject-ca-from"],
      `${NS}/sm-injector`,
    );
  });
});

describe("tls.mode=manual", () => {
  test("no Secret, no caBundle unless given; the test pod then takes the CA from the value", async () => {
    const o = await renderChart({ "tls.mode": "manual" });
    assert.equal(all(o, "Secret").length, 0);
    assert.equal(webhookOf(o).wh.clientConfig.caBundle, undefined);
    assert.equal(podTemplate(o).spec.volumes[0].secret.secretName, "sm-injector-tls");
    const ca = Buffer.from("-----BEGIN CERTIFICATE-----\n").toString("base64");
    const withCa = await renderChart({
      "tls.mode": "manual",
      "tls.manual.caBundle": ca,
      "tls.secretName": "mine",
    });
    assert.equal(webhookOf(withCa).wh.clientConfig.caBundle, ca);
    assert.equal(podTemplate(withCa).spec.volumes[0].secret.secretName, "mine");
    const testPod = find(withCa, "Pod");
    assert.equal(testPod.spec.volumes, undefined);
    assert.ok(
      testPod.spec.containers[0].env.some((e: K8sObject) => e.name === "SM_TEST_CA_BUNDLE" && e.value === ca),
    );
  });
});

describe("networkPolicy.enabled", () => {
  test("absent by default; when enabled: ingress to 8443 from anywhere, egress to the API server and DNS", async () => {
    assert.equal(all(await renderChart(), "NetworkPolicy").length, 0);
    const o = await renderChart({ "networkPolicy.enabled": true });
    const np = find(o, "NetworkPolicy");
    assert.ok(selects(np.spec.podSelector, podTemplate(o).metadata.labels));
    assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(np.spec.ingress, [{ ports: [{ port: 8443, protocol: "TCP" }] }]);
    assert.deepEqual(np.spec.egress, [
      {
        ports: [
          { port: 443, protocol: "TCP" },
          { port: 6443, protocol: "TCP" },
        ],
      },
      {
        ports: [
          { port: 53, protocol: "UDP" },
          { port: 53, protocol: "TCP" },
        ],
      },
    ]);
    assert.equal(hasCertManagerAnnotation(o), false);
  });

  test("restricted ingress still admits the helm test pod; API server CIDRs", async () => {
    const o = await renderChart({
      "networkPolicy.enabled": true,
      "networkPolicy.ingressFrom[0].ipBlock.cidr": "10.0.0.0/16",
      "networkPolicy.apiServer.cidrs[0]": "172.20.0.0/16",
      "networkPolicy.dns": false,
    });
    const np = find(o, "NetworkPolicy");
    const from = np.spec.ingress[0].from;
    assert.deepEqual(from[0], { ipBlock: { cidr: "10.0.0.0/16" } });
    assert.ok(selects(from[1].podSelector, find(o, "Pod").metadata.labels));
    assert.deepEqual(np.spec.egress, [
      {
        ports: [
          { port: 443, protocol: "TCP" },
          { port: 6443, protocol: "TCP" },
        ],
        to: [{ ipBlock: { cidr: "172.20.0.0/16" } }],
      },
    ]);
  });
});

describe("serviceMonitor.enabled", () => {
  test("absent by default; when enabled: HTTPS /metrics verified with the CA and the Service name", async () => {
    assert.equal(all(await renderChart(), "ServiceMonitor").length, 0);
    const o = await renderChart({ "serviceMonitor.enabled": true, "serviceMonitor.labels.release": "prom" });
    const sm = find(o, "ServiceMonitor");
    assert.equal(sm.metadata.labels?.release, "prom");
    assert.ok(selects(sm.spec.selector, find(o, "Service").metadata.labels));
    const [ep] = sm.spec.endpoints;
    assert.equal(ep.port, find(o, "Service").spec.ports[0].name);
    assert.equal(ep.scheme, "https");
    assert.equal(ep.path, "/metrics");
    assert.deepEqual(ep.tlsConfig, {
      serverName: "sm-injector.sm-injector.svc",
      ca: { secret: { name: "sm-injector-tls", key: "ca.crt" } },
    });
    const insecure = await renderChart({
      "serviceMonitor.enabled": true,
      "serviceMonitor.insecureSkipVerify": true,
    });
    assert.deepEqual(find(insecure, "ServiceMonitor").spec.endpoints[0].tlsConfig, {
      insecureSkipVerify: true,
    });
  });
});

describe("rotation.enabled", () => {
  test("absent by default; when enabled: its own pods, least RBAC, flags from values, restricted", async () => {
    assert.equal((await renderChart()).filter((o) => o.metadata.name.endsWith("-rotation")).length, 0);
    const o = await renderChart({
      "rotation.enabled": true,
      "rotation.intervalSeconds": 120,
      "rotation.region": "eu-west-1",
      "rotation.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn": "arn:aws:iam::1:role/rot",
    });
    const d = find(o, "Deployment", "sm-injector-rotation");
    const spec = d.spec.template.spec;
    assertRestrictedPod(spec, "rotation");
    const c = spec.containers[0];
    assert.equal(c.args[0], "rotation");
    assert.equal(argValue(c.args, "interval-seconds"), "120");
    assert.equal(argValue(c.args, "dry-run"), "false");
    assert.equal(argValue(c.args, "max-restarts-per-check"), "10");
    assert.deepEqual(c.env, [{ name: "AWS_REGION", value: "eu-west-1" }]);
    const sa = find(o, "ServiceAccount", "sm-injector-rotation");
    assert.equal(spec.serviceAccountName, sa.metadata.name);
    assert.equal(sa.metadata.annotations?.["eks.amazonaws.com/role-arn"], "arn:aws:iam::1:role/rot");
    // Not selected by anything of the webhook's: its Service, PDB and Deployment.
    const labels = d.spec.template.metadata.labels;
    assert.ok(selects(d.spec.selector, labels));
    assert.equal(selects({ matchLabels: find(o, "Service").spec.selector }, labels), false);
    assert.equal(selects(find(o, "PodDisruptionBudget").spec.selector, labels), false);
    assert.equal(selects(find(o, "Deployment", "sm-injector").spec.selector, labels), false);
    // RBAC: what the controller calls, nothing more (no Secrets, no pod writes).
    const role = find(o, "ClusterRole", "sm-injector-rotation");
    assert.deepEqual(role.rules, [
      { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
      { apiGroups: ["apps"], resources: ["replicasets", "controllerrevisions"], verbs: ["get"] },
      {
        apiGroups: ["apps"],
        resources: ["deployments", "statefulsets", "daemonsets"],
        verbs: ["get", "patch"],
      },
    ]);
    const binding = find(o, "ClusterRoleBinding", "sm-injector-rotation");
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: NS }]);
    // RBAC grants patch on whole objects; admission policies narrow it to the controller's annotations.
    const policies = all(o, "ValidatingAdmissionPolicy");
    assert.deepEqual(
      policies.map((p) => p.spec.matchConstraints.resourceRules[0].resources),
      [["deployments", "statefulsets"], ["daemonsets"]],
    );
    for (const p of policies) {
      assert.equal(p.spec.failurePolicy, "Fail");
      assert.equal(
        p.spec.matchConditions[0].expression,
        `request.userInfo.username == "system:serviceaccount:${NS}:${sa.metadata.name}"`,
      );
      const binding = find(o, "ValidatingAdmissionPolicyBinding", p.metadata.name);
      assert.deepEqual(binding.spec.validationActions, ["Deny"]);
    }
    const unrestricted = await renderChart({ "rotation.enabled": true, "rotation.restrictPatches": false });
    assert.equal(all(unrestricted, "ValidatingAdmissionPolicy").length, 0);
    // The flags the chart passes are ones the CLI accepts.
    const { loadRotationConfig } = await import("../../src/cli/rotation.ts");
    assert.equal(loadRotationConfig(c.args.slice(1), {}).intervalSeconds, 120);
  });

  test("rotation.metrics.port: the port, a Service and scrape annotations, read-only review RBAC and events", async () => {
    const plain = await renderChart({ "rotation.enabled": true });
    assert.equal(all(plain, "Service").filter((x) => x.metadata.name === "sm-injector-rotation").length, 0);
    assert.equal(
      find(plain, "Deployment", "sm-injector-rotation").spec.template.metadata.annotations,
      undefined,
    );
    const o = await renderChart({
      "rotation.enabled": true,
      "rotation.metrics.port": 9102,
      "rotation.metrics.maxSecrets": 50,
    });
    const d = find(o, "Deployment", "sm-injector-rotation");
    const c = d.spec.template.spec.containers[0];
    assert.equal(argValue(c.args, "metrics-port"), "9102");
    assert.equal(argValue(c.args, "metrics-max-secrets"), "50");
    assert.deepEqual(c.ports, [{ name: "metrics", containerPort: 9102, protocol: "TCP" }]);
    assert.deepEqual(d.spec.template.metadata.annotations, {
      "prometheus.io/scrape": "true",
      "prometheus.io/port": "9102",
      "prometheus.io/path": "/metrics",
    });
    const svc = find(o, "Service", "sm-injector-rotation");
    assert.ok(selects({ matchLabels: svc.spec.selector }, d.spec.template.metadata.labels));
    assert.deepEqual(svc.spec.ports, [
      { name: "metrics", port: 9102, targetPort: "metrics", protocol: "TCP" },
    ]);
    const role = find(o, "ClusterRole", "sm-injector-rotation");
    const writes = role.rules.filter((r: { verbs: string[] }) =>
      r.verbs.some((v) => !["get", "list"].includes(v)),
    );
    assert.deepEqual(
      writes.map(
        (r: { resources: string[]; verbs: string[] }) => `${r.resources.join(",")}: ${r.verbs.join(",")}`,
      ),
      ["deployments,statefulsets,daemonsets: get,patch", "events: create,get,patch"],
    );
    const { loadRotationConfig } = await import("../../src/cli/rotation.ts");
    assert.equal(loadRotationConfig(c.args.slice(1), {}).metricsPort, 9102);
  });

  test("report.clusterRole: read-only, no Secrets; absent by default", async () => {
    assert.equal(
      all(await renderChart(), "ClusterRole").filter((r) => r.metadata.name.endsWith("-report")).length,
      0,
    );
    const role = find(await renderChart({ "report.clusterRole": true }), "ClusterRole", "sm-injector-report");
    for (const r of role.rules as Array<{ resources: string[]; verbs: string[] }>) {
      assert.deepEqual(
        r.verbs.filter((v) => !["get", "list"].includes(v)),
        [],
        r.resources.join(),
      );
      assert.equal(r.resources.includes("secrets"), false);
    }
  });

  test("a long release name: the controller's names stay distinct from the webhook's", async () => {
    const release = "r".repeat(50);
    const o = await renderChart({ "rotation.enabled": true }, { release });
    const names = all(o, "Deployment").map((d) => d.metadata.name);
    assert.equal(new Set(names).size, 2, names.join(", "));
    assert.ok(names.every((n) => n.length <= 63));
  });

  test("rotation.namespace: a Role and RoleBinding in that namespace, and --namespace", async () => {
    const o = await renderChart({ "rotation.enabled": true, "rotation.namespace": "erp" });
    assert.equal(find(o, "Role", "sm-injector-rotation").metadata.namespace, "erp");
    assert.equal(find(o, "RoleBinding", "sm-injector-rotation").metadata.namespace, "erp");
    assert.equal(all(o, "ClusterRole").filter((r) => r.metadata.name === "sm-injector-rotation").length, 0);
    const c = find(o, "Deployment", "sm-injector-rotation").spec.template.spec.containers[0];
    assert.equal(argValue(c.args, "namespace"), "erp");
  });
});

test("replicaCount=3: three replicas, still one Secret and one CA", async () => {
  const o = await renderChart({ replicaCount: 3 });
  assert.equal(find(o, "Deployment").spec.replicas, 3);
  assert.equal(all(o, "Secret").length, 1);
  assert.equal(webhookOf(o).wh.clientConfig.caBundle, find(o, "Secret").data["ca.crt"]);
});

test("values reach the webhook flags and the pod spec", async () => {
  const digest = `sha256:${"a".repeat(64)}`;
  const o = await renderChart({
    "image.digest": digest,
    "injector.defaults.region": "eu-west-1",
    "injector.defaults.format": "dotenv",
    "injector.defaults.outputDir": "/run/secrets/app",
    "injector.allowNodeIdentity": true,
    "injector.resources.limits.memory": "256Mi",
    "injector.image.pullPolicy": "Always",
    "webhook.logLevel": "debug",
    "webhook.extraArgs[0]": "--max-secrets=100",
    "webhook.excludeNamespaces[0]": "legacy",
    "webhook.timeoutSeconds": 10,
    priorityClassName: "system-cluster-critical",
    hostNetwork: true,
  });
  const c = webhookContainer(o);
  assert.equal(c.image, `ghcr.io/sm-injector/sm-injector@${digest}`);
  const config = loadWebhookConfig(
    c.args.slice(1).filter((a: string) => !a.startsWith("--shutdown-delay-seconds=")),
    {},
  );
  assert.equal(
    config.injector.image,
    `ghcr.io/sm-injector/sm-injector@${digest}`,
    "init image inherits the digest",
  );
  assert.equal(config.injector.imagePullPolicy, "Always");
  assert.equal(config.injector.defaultRegion, "eu-west-1");
  assert.equal(config.injector.defaultFormat, "dotenv");
  assert.equal(config.injector.defaultOutputDir, "/run/secrets/app");
  assert.equal(config.injector.allowNodeIdentity, true);
  assert.equal(config.injector.resources.limits.memory, "256Mi");
  assert.equal(config.injector.maxSecrets, 100);
  assert.equal(config.logLevel, "debug");
  const spec = podTemplate(o).spec;
  assert.equal(spec.priorityClassName, "system-cluster-critical");
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
  const { wh } = webhookOf(o);
  assert.equal(wh.timeoutSeconds, 10);
  assert.equal(selects(wh.namespaceSelector, { "kubernetes.io/metadata.name": "legacy" }), false);

  const other = await renderChart({
    "image.digest": digest,
    "injector.image.repository": "registry.example.com/smi",
  });
  assert.equal(argValue(webhookContainer(other).args, "image"), "registry.example.com/smi:0.1.0");
});

describe("values.schema.json rejects bad values", () => {
  const bad: [string, Record<string, string>, RegExp][] = [
    ["replicaCount=abc", { replicaCount: "abc" }, /replicaCount/],
    ["an unknown top-level key", { replicas: "2" }, /additional properties 'replicas' not allowed/],
    ["an unknown nested key", { "webhook.failurePolicy": "Ignore" }, /additional properties 'failurePolicy'/],
    ["tls.mode=selfsigned", { "tls.mode": "selfsigned" }, /tls\/mode/],
    ["injector.defaults.format=xml", { "injector.defaults.format": "xml" }, /format/],
    ["webhook.timeoutSeconds=31", { "webhook.timeoutSeconds": "31" }, /timeoutSeconds/],
    ["injector.defaults.region=Frankfurt", { "injector.defaults.region": "Frankfurt" }, /region/],
    ["injector.resources.requests.cpu=lots", { "injector.resources.requests.cpu": "lots" }, /cpu/],
    ["image.pullPolicy=Sometimes", { "image.pullPolicy": "Sometimes" }, /pullPolicy/],
  ];
  for (const [name, set, message] of bad) {
    test(name, async () => {
      const r = await runHelm([
        "template",
        "sm-injector",
        CHART_DIR,
        ...Object.entries(set).flatMap(([k, v]) => ["--set", `${k}=${v}`]),
      ]);
      assert.notEqual(r.code, 0, `helm template accepted ${name}`);
      assert.match(r.stderr, message);
    });
  }
  test("a shutdown delay not shorter than the grace period", async () => {
    const r = await runHelm(["template", "x", CHART_DIR, "--set", "webhook.shutdownDelaySeconds=30"]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /shutdownDelaySeconds \(30\) must be less than terminationGracePeriodSeconds \(30\)/,
    );
  });
});

test("values.yaml: every value is documented and every schema property has a default", async () => {
  const text = await readFile(path.join(CHART_DIR, "values.yaml"), "utf8");
  const doc = parseDocument(text);
  const schema = JSON.parse(await readFile(path.join(CHART_DIR, "values.schema.json"), "utf8"));
  const undocumented: string[] = [];
  const walk = (map: YAMLMap, prefix: string, documented: boolean) => {
    map.items.forEach((pair, i) => {
      const key = String(isScalar(pair.key) ? pair.key.value : pair.key);
      // The comment above the first key of a nested map is attached to the map itself.
      const here =
        documented ||
        Boolean(
          (isScalar(pair.key) && pair.key.commentBefore) ||
            (i === 0 && map.commentBefore) ||
            (isScalar(pair.value) && pair.value.comment),
        );
      if (isMap(pair.value) && pair.value.items.length > 0) walk(pair.value, `${prefix}${key}.`, here);
      else if (!here) undocumented.push(`${prefix}${key}`);
    });
  };
  assert.ok(isMap(doc.contents));
  walk(doc.contents as YAMLMap, "", false);
  assert.deepEqual(undocumented, [], "values without a comment");

  const values = doc.toJS();
  const missing: string[] = [];
  const check = (s: K8sObject, v: unknown, p: string) => {
    if (s.type !== "object" || !s.properties || s.additionalProperties !== false) return;
    // An empty default ({}: tls.certManager.issuerRef, affinity) means "none"; its keys are optional.
    if (v !== null && typeof v === "object" && Object.keys(v).length === 0) return;
    for (const [k, sub] of Object.entries(s.properties as Record<string, K8sObject>)) {
      const has = v !== null && typeof v === "object" && Object.hasOwn(v, k);
      if (!has) missing.push(`${p}${k}`);
      else check(sub, (v as Record<string, unknown>)[k], `${p}${k}.`);
    }
  };
  check(schema, values, "");
  assert.deepEqual(missing, [], "schema properties without a default in values.yaml");
  assert.equal(schema.additionalProperties, false);
});

describe("manifests/sm-injector.yaml", () => {
  test("is up to date with the chart (re-run scripts/render-manifests.sh)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sm-injector-manifests-"));
    try {
      const out = path.join(dir, "sm-injector.yaml");
      await execFileAsync("bash", [path.join(REPO_ROOT, "scripts", "render-manifests.sh"), out], {
        env: { ...process.env, HELM: await helmPath() },
      });
      const [fresh, committed] = await Promise.all([
        readFile(out, "utf8"),
        readFile(path.join(REPO_ROOT, "manifests", "sm-injector.yaml"), "utf8"),
      ]);
      assert.ok(
        fresh === committed,
        "manifests/sm-injector.yaml is stale: run `bash scripts/render-manifests.sh` and commit the result",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("deterministic: the Namespace first, no generated Secret or caBundle, no test hook", async () => {
    const objs = parseManifests(
      await readFile(path.join(REPO_ROOT, "manifests", "sm-injector.yaml"), "utf8"),
    );
    assert.equal(objs[0]?.kind, "Namespace");
    assert.equal(objs[0]?.metadata.name, NS);
    assert.equal(objs[0]?.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted");
    assert.equal(all(objs, "Secret").length, 0);
    assert.equal(all(objs, "Pod").length, 0);
    assert.equal(webhookOf(objs).wh.clientConfig.caBundle, undefined);
    assert.equal(find(objs, "Deployment").spec.template.metadata.annotations?.["checksum/tls"], undefined);
    const twice = [
      await helmTemplate({ set: { "tls.mode": "manual" } }),
      await helmTemplate({ set: { "tls.mode": "manual" } }),
    ];
    assert.equal(twice[0], twice[1]);
  });
});

describe("webhook connection limits and client-certificate authentication", () => {
  test("slow-client timeouts stay below the API server's admission timeout; caps reach the flags", async () => {
    for (const timeoutSeconds of [1, 5, 30]) {
      const o = await renderChart({ "webhook.timeoutSeconds": timeoutSeconds });
      const args: string[] = webhookContainer(o).args.slice(1);
      const config = loadWebhookConfig(
        args.filter((a) => !a.startsWith("--shutdown-delay-seconds=")),
        {},
      );
      assert.ok(config.requestTimeoutSeconds >= 1);
      if (timeoutSeconds > 1) assert.ok(config.requestTimeoutSeconds < webhookOf(o).wh.timeoutSeconds);
      assert.equal(config.maxConnections, 512);
      assert.equal(config.maxInFlightBodyBytes, 32 * 1024 * 1024);
      assert.equal(config.clientCaFile, undefined);
      // The V8 heap is capped well below the container's memory limit (256Mi), its young
      // generation small (issue 13: resident memory after load).
      const nodeOptions = webhookContainer(o).env.find((e: K8sObject) => e.name === "NODE_OPTIONS");
      assert.equal(nodeOptions?.value, "--max-old-space-size=128 --max-semi-space-size=2");
    }
  });

  test("heap flags: each can be left to Node (0), both gone drops NODE_OPTIONS", async () => {
    const options = async (values: Record<string, number>) =>
      webhookContainer(await renderChart(values)).env?.find((e: K8sObject) => e.name === "NODE_OPTIONS")
        ?.value;
    assert.equal(await options({ "webhook.maxSemiSpaceMiB": 0 }), "--max-old-space-size=128");
    assert.equal(await options({ "webhook.maxHeapMiB": 0 }), "--max-semi-space-size=2");
    assert.equal(await options({ "webhook.maxHeapMiB": 0, "webhook.maxSemiSpaceMiB": 0 }), undefined);
  });

  test("clientAuth with a caBundle: a ConfigMap, mounted and passed as --client-ca-file; the helm test expects 401", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "chart-client-ca-"));
    try {
      const ca = await generateCA(dir, "api-server-client-ca");
      const o = await renderChart(
        { "webhook.clientAuth.enabled": true, "webhook.clientAuth.allowedNames[0]": "kube-apiserver" },
        { args: ["--set-file", `webhook.clientAuth.caBundle=${ca.certPath}`] },
      );
      const cm = find(o, "ConfigMap", "sm-injector-client-ca");
      assert.equal(cm.data["ca.crt"].trim(), ca.certPem.trim());
      const c = webhookContainer(o);
      const config = loadWebhookConfig(
        c.args.slice(1).filter((a: string) => !a.startsWith("--shutdown-delay-seconds=")),
        {},
      );
      assert.equal(config.clientCaFile, "/etc/sm-injector/client-ca/ca.crt");
      assert.deepEqual(config.clientAllowedNames, ["kube-apiserver"]);
      const mount = c.volumeMounts.find((m: K8sObject) => m.name === "client-ca");
      assert.equal(mount.mountPath, "/etc/sm-injector/client-ca");
      const vol = podTemplate(o).spec.volumes.find((v: K8sObject) => v.name === "client-ca");
      assert.equal(vol.configMap.name, "sm-injector-client-ca");
      // Probes stay unauthenticated: the kubelet presents no client certificate.
      assert.equal(c.livenessProbe.httpGet.path, "/healthz");
      const testPod = o.find((x) => x.kind === "Pod");
      const env = testPod?.spec.containers[0].env.find((e: K8sObject) => e.name === "SM_TEST_CLIENT_AUTH");
      assert.equal(env?.value, "true");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("clientAuth with an existing ConfigMap: no ConfigMap rendered, that one mounted", async () => {
    const o = await renderChart({
      "webhook.clientAuth.enabled": true,
      "webhook.clientAuth.existingConfigMap": "apiserver-webhook-client-ca",
    });
    assert.equal(all(o, "ConfigMap").length, 0);
    const vol = podTemplate(o).spec.volumes.find((v: K8sObject) => v.name === "client-ca");
    assert.equal(vol.configMap.name, "apiserver-webhook-client-ca");
  });

  test("clientAuth without a CA, or with both sources, is refused with what to set", async () => {
    const none = await runHelm(["template", "x", CHART_DIR, "--set", "webhook.clientAuth.enabled=true"]);
    assert.notEqual(none.code, 0);
    assert.match(
      none.stderr,
      /webhook\.clientAuth\.caBundle \(PEM\) or webhook\.clientAuth\.existingConfigMap/,
    );
    const both = await runHelm([
      "template",
      "x",
      CHART_DIR,
      "--set",
      "webhook.clientAuth.enabled=true",
      "--set",
      "webhook.clientAuth.existingConfigMap=a",
      "--set",
      "webhook.clientAuth.caBundle=-----BEGIN CERTIFICATE-----x",
    ]);
    assert.notEqual(both.code, 0);
    assert.match(both.stderr, /not both/);
  });
});

test("the webhook and rotation containers start the CLI plainly (the entry-plain ENTRYPOINT), not from the image's fetch snapshot", async () => {
  // The Dockerfile's entry-plain stage's ENTRYPOINT: the chart must start the very same command.
  const dockerfile = await readFile(path.join(REPO_ROOT, "Dockerfile"), "utf8");
  const plain = /^FROM runtime AS entry-plain\n(?:.*\n)*?ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  assert.ok(plain, "no ENTRYPOINT in the Dockerfile's entry-plain stage");
  const [node, script] = JSON.parse(plain) as [string, string];
  const o = await renderChart({ "rotation.enabled": true });
  const command = (name: string) => find(o, "Deployment", name).spec.template.spec.containers[0].command;
  assert.deepEqual(command("sm-injector-rotation"), [node, script], "rotation: command");
  // The webhook's V8 flags go between node and the script (NODE_OPTIONS cannot carry them).
  assert.deepEqual(
    command("sm-injector"),
    [node, "--no-concurrent-recompilation", script],
    "webhook: command",
  );
  const none = await renderChart({}, { args: ["--set-json", "webhook.v8Flags=[]"] });
  assert.deepEqual(webhookContainer(none).command, [node, script], "webhook.v8Flags=[]: command");
});

test("webhook.v8Flags: only flags, so a value cannot add a script or an argument", async () => {
  for (const bad of ["{--jitless,/tmp/evil.js}", "{-e}", "{--stack-size=1 x}"]) {
    const r = await runHelm(["template", "x", CHART_DIR, "--set", `webhook.v8Flags=${bad}`]);
    assert.notEqual(r.code, 0, `${bad} was accepted`);
    assert.match(r.stderr, /v8Flags/);
  }
});
