// Client-certificate authentication of the API server, end to end: kube-apiserver started with an
// AdmissionConfiguration whose kubeconfig gives it a client certificate for the webhook's host:port,
// the webhook started with --client-ca-file. Pods created through the API server are injected; a
// direct POST to /mutate without a certificate, or with one from another CA, is refused.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { generateCA, generateCert, type IssuedCert } from "./harness/certs.ts";
import { INIT_CONTAINER, INJECT_LABEL, useE2E } from "./harness/env.ts";

const NS = "client-auth";
const ROLE_ARN = "arn:aws:iam::123456789012:role/app";

const env = useE2E(
  { before, after },
  {
    webhookClientAuth: true,
    setup: (e) =>
      e.createNamespace(NS, { serviceAccounts: { app: { "eks.amazonaws.com/role-arn": ROLE_ARN } } }),
  },
);

/** A direct POST of an AdmissionReview naming the other namespace's ServiceAccount, as an attacker would. */
function directPost(client?: IssuedCert): Promise<{ status: number; body: string }> {
  const { webhook } = env();
  const review = {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "direct",
      kind: { group: "", version: "v1", kind: "Pod" },
      namespace: NS,
      operation: "CREATE",
      object: {
        metadata: {
          name: "spy",
          namespace: NS,
          labels: { [INJECT_LABEL]: "true" },
          annotations: { "sm-injector.io/env.A": "erp/a/b" },
        },
        spec: { serviceAccountName: "app", containers: [{ name: "c", image: "busybox" }] },
      },
    },
  };
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${webhook.url}/mutate`,
      {
        method: "POST",
        ca: webhook.ca.certPem,
        agent: false,
        headers: { "content-type": "application/json" },
        ...(client && { cert: client.certPem, key: client.keyPem }),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(review));
  });
}

describe("the webhook authenticates the API server by its client certificate", () => {
  test("kube-apiserver runs with the AdmissionConfiguration", () => {
    const { cp } = env();
    assert.ok(cp.apiServerArgs.some((a) => a.startsWith("--admission-control-config-file=")));
  });

  test("an opted-in pod created through the API server is injected", async () => {
    const { core } = env();
    const pod = await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: {
          name: "app",
          labels: { [INJECT_LABEL]: "true" },
          annotations: { "sm-injector.io/env.DB_PASSWORD": "erp/e2e/db#password" },
        },
        spec: {
          serviceAccountName: "app",
          containers: [{ name: "app", image: "registry.example.com/app:1", command: ["/app"] }],
        },
      },
    });
    assert.deepEqual(
      pod.spec?.initContainers?.map((c) => c.name),
      [INIT_CONTAINER],
    );
    const roleArn = pod.spec?.initContainers?.[0]?.env?.find((e) => e.name === "AWS_ROLE_ARN")?.value;
    assert.equal(roleArn, ROLE_ARN);
  });

  test("a direct POST without a client certificate is refused and learns nothing", async () => {
    const res = await directPost();
    assert.equal(res.status, 401, res.body);
    assert.doesNotMatch(res.body, /arn:aws|patch/);
    assert.match(JSON.parse(res.body).error, /client certificate/);
  });

  test("a direct POST with a certificate from another CA is refused", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sm-injector-foreign-"));
    try {
      const foreignCa = await generateCA(dir, "foreign-ca");
      const cert = await generateCert(dir, foreignCa, { cn: "kube-apiserver-webhook-client", client: true });
      const res = await directPost(cert);
      assert.equal(res.status, 401, res.body);
      assert.doesNotMatch(res.body, /arn:aws|patch/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the API server's own certificate is what the webhook accepts", async () => {
    const material = env().clientAuth;
    assert.ok(material);
    const res = await directPost(material.apiServerCert);
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).response.uid, "direct");
  });
});
