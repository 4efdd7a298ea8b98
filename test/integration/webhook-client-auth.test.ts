// `--client-ca-file`: /mutate answers only callers with a client certificate signed by that CA (the
// API server, configured with an AdmissionConfiguration kubeconfig), optionally only some names;
// the kubelet's probes and Prometheus still reach /healthz, /readyz and /metrics without one; the
// CA file is reloaded like the serving certificate. Through the real bundled webhook over TLS.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type CertAuthority, generateCA, generateCert, type IssuedCert } from "../e2e/harness/certs.ts";
import {
  admissionReview,
  requireBundle,
  startWebhookProcess,
  type WebhookProcess,
} from "../helpers/webhook.ts";

const CLIENT_NAME = "kube-apiserver-webhook-client";

const review = () =>
  admissionReview({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "plain", namespace: "erp" },
    spec: { containers: [{ name: "app", image: "app:1" }] },
  });

function call(
  wh: WebhookProcess,
  method: string,
  path: string,
  client?: IssuedCert,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${wh.url}${path}`,
      {
        method,
        ca: wh.ca.certPem,
        agent: false,
        headers: { "content-type": "application/json" },
        ...(client && { cert: client.certPem, key: client.keyPem }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    req.end(method === "POST" ? JSON.stringify(review()) : undefined);
  });
}

describe("client-certificate authentication of the API server", () => {
  let wh: WebhookProcess;
  let clientCa: CertAuthority;
  let apiServer: IssuedCert;
  let otherName: IssuedCert;
  let foreign: IssuedCert;
  let caFile: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "sm-injector-client-auth-"));
    clientCa = await generateCA(join(dir, "client"), "api-server-client-ca");
    caFile = join(dir, "client-ca.crt");
    await copyFile(clientCa.certPath, caFile);
    wh = await startWebhookProcess({
      args: [
        "--namespace-policy",
        "false",
        "--tls-reload-interval-seconds",
        "1",
        "--client-ca-file",
        caFile,
        "--client-allowed-names",
        `${CLIENT_NAME},other-allowed`,
      ],
    });
    apiServer = await generateCert(join(dir, "client"), clientCa, { cn: CLIENT_NAME, client: true });
    otherName = await generateCert(join(dir, "client"), clientCa, { cn: "someone-else", client: true });
    const foreignCa = await generateCA(join(dir, "foreign"), "foreign-ca");
    foreign = await generateCert(join(dir, "foreign"), foreignCa, { cn: CLIENT_NAME, client: true });
  });
  after(async () => {
    await wh?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("/mutate without a client certificate is refused with 401 and says what is needed", async () => {
    const res = await call(wh, "POST", "/mutate");
    assert.equal(res.status, 401, res.body);
    assert.match(JSON.parse(res.body).error, /no client certificate was presented.*--client-ca-file/);
    assert.ok((await wh.metric("sm_injector_refused_requests_total", { reason: "client_certificate" })) >= 1);
  });

  test("a certificate from another CA is refused, even with the allowed name", async () => {
    const res = await call(wh, "POST", "/mutate", foreign);
    assert.equal(res.status, 401, res.body);
    assert.match(JSON.parse(res.body).error, /not accepted/);
  });

  test("a certificate from the CA but with a name not allowed is refused", async () => {
    const res = await call(wh, "POST", "/mutate", otherName);
    assert.equal(res.status, 401, res.body);
    assert.match(JSON.parse(res.body).error, /someone-else.*--client-allowed-names/);
  });

  test("the API server's certificate gets its AdmissionReview answered", async () => {
    const res = await call(wh, "POST", "/mutate", apiServer);
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).kind, "AdmissionReview");
  });

  test("probes and /metrics need no client certificate", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      assert.equal((await call(wh, "GET", path)).status, 200, path);
    }
  });

  test("a new client CA is picked up without a restart", async () => {
    const nextCa = await generateCA(join(dir, "next"), "next-client-ca");
    const next = await generateCert(join(dir, "next"), nextCa, { cn: CLIENT_NAME, client: true });
    await copyFile(nextCa.certPath, caFile);
    const deadline = Date.now() + 15_000;
    while ((await call(wh, "POST", "/mutate", next)).status !== 200) {
      assert.ok(Date.now() < deadline, "the new client CA was not used within 15 s");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal((await call(wh, "POST", "/mutate", apiServer)).status, 401, "the old CA must be dropped");
  });
});

describe("client-certificate flags", () => {
  test("--client-allowed-names without --client-ca-file is a configuration error", () => {
    const r = spawnSync(
      process.execPath,
      [
        requireBundle(),
        "webhook",
        "--image",
        "x",
        "--tls-cert-file",
        "/dev/null",
        "--tls-key-file",
        "/dev/null",
      ],
      { encoding: "utf8", env: { PATH: process.env.PATH, SM_INJECTOR_CLIENT_ALLOWED_NAMES: "a" } },
    );
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /--client-allowed-names \(SM_INJECTOR_CLIENT_ALLOWED_NAMES\): needs --client-ca-file/,
    );
  });
});
