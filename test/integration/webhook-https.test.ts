// The real bundled webhook over real TLS, driven with AdmissionReview documents the way the API
// server sends them: injection, refusals, malformed input, metrics, certificate reload, shutdown.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFile, readFile } from "node:fs/promises";
import https from "node:https";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateCA, generateCert } from "../e2e/harness/certs.ts";
import { applyPatch } from "../helpers/json-patch.ts";
import {
  admissionReview,
  requireBundle,
  startWebhookProcess,
  type WebhookProcess,
} from "../helpers/webhook.ts";

const pod = (
  annotations: Record<string, string>,
  labels: Record<string, string> = { "sm-injector.io/inject": "true" },
) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { generateName: "api-", namespace: "erp", labels, annotations },
  spec: {
    securityContext: { runAsUser: 1000, fsGroup: 1000 },
    containers: [
      {
        name: "api",
        image: "api:1",
        command: ["uvicorn"],
        env: [
          { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/api" },
          {
            name: "AWS_WEB_IDENTITY_TOKEN_FILE",
            value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
          },
        ],
      },
    ],
  },
});

type Review = {
  response: {
    uid: string;
    allowed: boolean;
    patch?: string;
    patchType?: string;
    warnings?: string[];
    status?: { code: number; message: string };
  };
};

describe("sm-injector webhook over HTTPS", () => {
  let wh: WebhookProcess;
  before(async () => {
    wh = await startWebhookProcess({
      args: [
        "--namespace-policy",
        "false",
        "--default-region",
        "eu-west-1",
        "--tls-reload-interval-seconds",
        "1",
        "--body-limit-bytes",
        "65536",
      ],
    });
  });
  after(async () => {
    await wh?.stop();
  });

  test("an opted-in pod gets a JSON patch that adds the init container, volume and mount", async () => {
    const p = pod({ "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key" });
    const review = admissionReview(p) as { request: { uid: string } };
    const res = await wh.post("/mutate", review);
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body) as Review & { apiVersion: string; kind: string };
    assert.equal(body.apiVersion, "admission.k8s.io/v1");
    assert.equal(body.kind, "AdmissionReview");
    assert.equal(body.response.uid, review.request.uid);
    assert.equal(body.response.allowed, true);
    assert.equal(body.response.patchType, "JSONPatch");
    const patched = applyPatch<unknown>(
      p,
      JSON.parse(Buffer.from(body.response.patch as string, "base64").toString()),
    ) as {
      spec: {
        initContainers: { name: string; args: string[] }[];
        volumes: { name: string; emptyDir: { medium: string } }[];
      };
      metadata: { annotations: Record<string, string> };
    };
    assert.deepEqual(
      patched.spec.initContainers.map((c) => c.name),
      ["sm-injector-fetch"],
    );
    assert.deepEqual(patched.spec.initContainers[0]?.args, ["fetch"]);
    assert.equal(patched.spec.volumes[0]?.emptyDir.medium, "Memory");
    assert.equal(patched.metadata.annotations["sm-injector.io/status"], "injected");
    assert.equal(await wh.metric("sm_injector_injections_total", { namespace: "erp" }), 1);
  });

  test("each admission writes one JSON audit line naming the secrets, never a value", async () => {
    await wh.post(
      "/mutate",
      admissionReview(pod({ "sm-injector.io/env.DB": "erp/production/rds#password" })),
    );
    // The line travels child stdout → this process → the log file: wait for it (2 s at most).
    let log = "";
    let audit: Record<string, unknown> | undefined;
    for (
      const t0 = Date.now();
      !audit && Date.now() - t0 < 2000;
      await new Promise((r) => setTimeout(r, 20))
    ) {
      log = await readFile(wh.process.logPath, "utf8");
      audit = log
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === "admission" && (l.secretIds as string[])?.includes("erp/production/rds"));
    }
    assert.ok(audit, `no audit line in:\n${log}`);
    assert.equal(audit.namespace, "erp");
    assert.equal(audit.result, "injected");
    assert.equal(audit.serviceAccount, "default");
  });

  test("a pod without the label is allowed untouched", async () => {
    const res = JSON.parse((await wh.post("/mutate", admissionReview(pod({}, { app: "x" })))).body) as Review;
    assert.equal(res.response.allowed, true);
    assert.equal(res.response.patch, undefined);
  });

  test("invalid annotations are refused with a message naming the annotation", async () => {
    const res = JSON.parse(
      (await wh.post("/mutate", admissionReview(pod({ "sm-injector.io/env.BAD-NAME": "erp/a/b" })))).body,
    ) as Review;
    assert.equal(res.response.allowed, false);
    assert.equal(res.response.status?.code, 400);
    assert.match(
      res.response.status?.message ?? "",
      /sm-injector\.io\/env\.BAD-NAME: "BAD-NAME" is not a valid environment variable name/,
    );
    assert.ok((await wh.metric("sm_injector_admission_requests_total", { result: "denied" })) >= 1);
  });

  test("dry-run requests are mutated but not counted as injections", async () => {
    const beforeCount = await wh.metric("sm_injector_injections_total", { namespace: "dry" });
    const p = pod({ "sm-injector.io/env.A": "erp/a/b" });
    p.metadata.namespace = "dry";
    const res = JSON.parse((await wh.post("/mutate", admissionReview(p, { dryRun: true }))).body) as Review;
    assert.equal(res.response.allowed, true);
    assert.ok(res.response.patch);
    assert.equal(await wh.metric("sm_injector_injections_total", { namespace: "dry" }), beforeCount);
  });

  test("malformed requests get a clear 4xx answer and never crash the server", async () => {
    const cases: [string, string | object, number, RegExp][] = [
      ["not JSON", "{not json", 400, /sm-injector: /],
      ["empty object", {}, 400, /not an AdmissionReview v1/],
      [
        "v1beta1",
        { apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview", request: {} },
        400,
        /admissionReviewVersions: \[v1\]/,
      ],
      ["no request", { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }, 400, /request/],
      [
        "prototype poisoning",
        '{"__proto__":{"x":1},"apiVersion":"admission.k8s.io/v1"}',
        400,
        /sm-injector: /,
      ],
      ["too large", JSON.stringify({ pad: "x".repeat(70_000) }), 413, /sm-injector: /],
    ];
    for (const [name, body, status, message] of cases) {
      const res = await wh.post("/mutate", body);
      assert.equal(res.status, status, `${name}: ${res.body}`);
      assert.match(JSON.parse(res.body).error, message, name);
    }
    const wrongType = await wh.post("/mutate", "x", { "content-type": "text/plain" });
    assert.equal(wrongType.status, 415);
    const odd = admissionReview({
      kind: "Pod",
      metadata: { labels: { "sm-injector.io/inject": "true" } },
      spec: "nope",
    });
    const res = JSON.parse((await wh.post("/mutate", odd)).body) as Review;
    assert.equal(res.response.allowed, false);
    assert.match(res.response.status?.message ?? "", /malformed/);
    assert.equal((await wh.get("/healthz")).status, 200);
    assert.equal((await wh.get("/nope")).status, 404);
  });

  test("the serving certificate is reloaded when its files change, without a restart", async () => {
    const newCa = await generateCA(wh.dir, "rotated-ca");
    const next = await generateCert(wh.dir, newCa, { cn: "rotated", name: "rotated", sans: ["127.0.0.1"] });
    await copyFile(next.keyPath, wh.serving.keyPath);
    await copyFile(next.certPath, wh.serving.certPath);
    const trusts = (ca: string) =>
      new Promise<boolean>((resolve) => {
        const req = https.get(`${wh.url}/healthz`, { ca, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on("error", () => resolve(false));
      });
    const deadline = Date.now() + 15_000;
    while (!(await trusts(newCa.certPem))) {
      assert.ok(Date.now() < deadline, "the new certificate was not served within 15 s");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await trusts(wh.ca.certPem), false, "the old CA must no longer verify");
    assert.ok((await wh.metric("sm_injector_tls_reloads_total", { result: "ok" })) >= 1);
    // The metric scrape above used the old CA; switch the helper over for the remaining tests.
    wh.ca.certPem = newCa.certPem;
  });

  test("SIGTERM drains and exits 0", async () => {
    wh.process.child.kill("SIGTERM");
    const r = await wh.process.exited;
    assert.equal(r.code, 0);
  });
});

describe("sm-injector webhook start-up errors", () => {
  test("missing image and bad port are reported together, naming flag and variable", () => {
    const r = spawnSync(
      process.execPath,
      [requireBundle(), "webhook", "--port", "99999", "--tls-cert-file", "a", "--tls-key-file", "b"],
      {
        encoding: "utf8",
        env: { PATH: process.env.PATH },
      },
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--port \(SM_INJECTOR_PORT\)/);
    assert.match(r.stderr, /--image \(SM_INJECTOR_IMAGE\): is required/);
  });

  test("unknown flags are refused", () => {
    const r = spawnSync(process.execPath, [requireBundle(), "webhook", "--prot", "1"], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--prot/);
  });

  test("a missing certificate file stops the server with the path in the message", () => {
    const r = spawnSync(
      process.execPath,
      [
        requireBundle(),
        "webhook",
        "--image",
        "x",
        "--tls-cert-file",
        join("/nonexistent", "tls.crt"),
        "--tls-key-file",
        "/nonexistent/tls.key",
      ],
      { encoding: "utf8", env: { PATH: process.env.PATH } },
    );
    assert.equal(r.status, 1);
    // Both files named, each with its flag, whichever read failed first.
    assert.match(r.stderr, /cannot read --tls-cert-file \/nonexistent\/tls\.crt \(ENOENT/);
    assert.match(r.stderr, /cannot read --tls-key-file \/nonexistent\/tls\.key \(ENOENT/);
  });
});
