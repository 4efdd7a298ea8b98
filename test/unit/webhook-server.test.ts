// The webhook's HTTP layer, driven through buildServer().inject() (no socket): whatever happens while
// a body that parsed as an AdmissionReview is handled, the API server gets an AdmissionReview back
// and an audit line is written; audit lines and metric labels stay bounded whatever a caller sends.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { pino } from "pino";
import type { ReviewDeps } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { loadWebhookConfig } from "../../src/webhook/config.ts";
import { countJsonValues } from "../../src/webhook/json-cost.ts";
import { buildServer } from "../../src/webhook/server.ts";
import { admissionReview } from "../helpers/webhook.ts";

const config = InjectorConfigSchema.parse({ image: "registry.example.com/sm-injector:test" });

/** A logger whose JSON lines are kept, for the audit assertions. */
function capturedLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      cb();
    },
  });
  const logger = pino({ level: "info" }, stream);
  return {
    logger,
    lines,
    audits: () =>
      lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "admission"),
  };
}

const pod = (ns: string, annotations: Record<string, string>, name = "api-1") => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels: { "sm-injector.io/inject": "true" }, annotations },
  spec: {
    securityContext: { runAsUser: 1000 },
    containers: [
      {
        name: "api",
        image: "api:1",
        env: [
          { name: "AWS_REGION", value: "eu-west-1" },
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

const okDeps: ReviewDeps = {
  config,
  lookupServiceAccount: async () => ({}) as never,
};

type Review = {
  apiVersion: string;
  kind: string;
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string };
    warnings?: string[];
  };
};

describe("the HTTP layer always answers an AdmissionReview", () => {
  test("an exception in the review becomes a denial carrying the uid, with an audit line; a non-review keeps its 400", async () => {
    const throwing: ReviewDeps = {
      // A dependency that blows up where nothing expects it to (a bug, not an API error).
      get config(): never {
        throw new TypeError("Cannot read properties of undefined (reading 'image')");
      },
      lookupServiceAccount: async () => ({}) as never,
    };
    const log = capturedLogger();
    const { app } = buildServer({ deps: throwing, logger: log.logger });
    const review = admissionReview(pod("erp", { "sm-injector.io/env.A": "erp/a/b" })) as {
      request: { uid: string };
    };
    const res = await app.inject({ method: "POST", url: "/mutate", payload: review });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json() as Review;
    assert.equal(body.apiVersion, "admission.k8s.io/v1");
    assert.equal(body.kind, "AdmissionReview");
    assert.equal(body.response.uid, review.request.uid);
    assert.equal(body.response.allowed, false);
    assert.equal(body.response.status?.code, 500);
    assert.match(body.response.status?.message ?? "", /sm-injector: internal error .*refused/);
    const audit = log.audits().find((a) => a.uid === review.request.uid);
    assert.ok(audit, `no audit line in:\n${log.lines.join("\n")}`);
    assert.equal(audit.result, "error");
    assert.equal(audit.namespace, "erp");
    // A body that is not an AdmissionReview has no uid to answer: it keeps a 400 saying why.
    for (const payload of [{}, { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }, [1, 2]]) {
      const res = await app.inject({ method: "POST", url: "/mutate", payload });
      assert.equal(res.statusCode, 400, res.body);
      assert.match((res.json() as { error: string }).error, /^sm-injector: not an AdmissionReview v1/);
    }
    await app.close();
  });
});

describe("a review that hangs", () => {
  test("is answered with a denial once the request timeout has passed", { timeout: 10_000 }, async () => {
    const log = capturedLogger();
    const hanging: ReviewDeps = {
      config,
      lookupServiceAccount: async () => ({}) as never,
      // A Kubernetes API that never answers.
      lookupNamespacePolicy: () => new Promise(() => {}),
    };
    const { app } = buildServer({ deps: hanging, logger: log.logger, limits: { requestTimeoutMs: 300 } });
    const review = admissionReview(pod("erp", { "sm-injector.io/env.A": "erp/a/b" })) as {
      request: { uid: string };
    };
    const res = await app.inject({ method: "POST", url: "/mutate", payload: review });
    const body = res.json() as Review;
    assert.equal(body.response.uid, review.request.uid);
    assert.equal(body.response.allowed, false);
    assert.match(body.response.status?.message ?? "", /did not finish within 300 ms/);
    assert.equal(log.audits()[0]?.result, "error");
    await app.close();
  });
});

describe("the cost of parsing is bounded before parsing", () => {
  test("objects, arrays and elements are counted outside strings only", () => {
    assert.equal(countJsonValues(Buffer.from('{"a":[1,2,{"b":"[,{"}],"c":"x\\"[,"}')), 6);
    assert.equal(countJsonValues(Buffer.from(`[${"{},".repeat(10)}{}]`), 5), 6);
  });

  test("an AdmissionReview that would parse into a million objects is denied, never parsed, with its uid and an audit line", async () => {
    const log = capturedLogger();
    const { app } = buildServer({ deps: okDeps, logger: log.logger });
    const parsed = admissionReview(pod("erp", {})) as Review & { request: { uid: string } };
    const review = JSON.stringify(parsed).replace(
      '"containers":[',
      `"x":[${"{},".repeat(1_000_000)}{}],"containers":[`,
    );
    const res = await app.inject({
      method: "POST",
      url: "/mutate",
      payload: review,
      headers: { "content-type": "application/json" },
    });
    // An AdmissionReview answer, so that kube-apiserver shows sm-injector's message to the user.
    assert.equal(res.statusCode, 200, res.body.slice(0, 300));
    const body = res.json() as Review;
    assert.equal(body.response.uid, parsed.request.uid);
    assert.equal(body.response.allowed, false);
    assert.match(
      body.response.status?.message ?? "",
      /^sm-injector: this pod is too large to examine: .*more than 100,000 JSON objects/,
    );
    assert.equal(log.audits()[0]?.reason, "too many JSON values");
    // Not an AdmissionReview (no request uid near the start): a plain 400.
    const junk = await app.inject({
      method: "POST",
      url: "/mutate",
      payload: `[${"{},".repeat(200_000)}{}]`,
      headers: { "content-type": "application/json" },
    });
    assert.equal(junk.statusCode, 400, junk.body.slice(0, 300));
    assert.match(junk.json().error, /more than 100000 JSON objects, arrays and elements/);
    // An ordinary pod with a large annotation (one string) is not affected.
    const big = admissionReview(
      pod("erp", { "sm-injector.io/env.A": "erp/a/b", note: "[{,".repeat(300_000) }),
    );
    const ok = await app.inject({ method: "POST", url: "/mutate", payload: big });
    assert.equal(ok.statusCode, 200, ok.body.slice(0, 300));
    await app.close();
  });
});

describe("one log line per admission", () => {
  test("the audit line only: no per-request lines from fastify, and no deprecation warning building the server", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const log = capturedLogger();
      const { app } = buildServer({ deps: okDeps, logger: log.logger });
      const res = await app.inject({
        method: "POST",
        url: "/mutate",
        payload: admissionReview(pod("erp", { "sm-injector.io/env.A": "erp/a/b" })),
      });
      assert.equal(res.statusCode, 200);
      assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
      await app.close();
      const msgs = log.lines.map((l) => (JSON.parse(l) as { msg?: string }).msg);
      assert.equal(msgs.filter((m) => m === "admission").length, 1, msgs.join(", "));
      assert.deepEqual(
        msgs.filter((m) => m === "incoming request" || m === "request completed"),
        [],
        "fastify's request logging is off",
      );
      // process.emitWarning is delivered on the next tick.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(
        warnings.map((w) => `${w.name} ${(w as { code?: string }).code ?? ""}: ${w.message}`),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });
});

describe("audit lines are bounded", () => {
  test("a huge denial message, pod name and user name do not make a huge audit line", async () => {
    const log = capturedLogger();
    const deps: ReviewDeps = {
      config,
      lookupServiceAccount: async () => ({}) as never,
      // An API error whose text is enormous ends up in the denial message.
      lookupNamespacePolicy: async () => {
        throw new Error(`upstream said: ${"x".repeat(2_000_000)}`);
      },
    };
    const { app } = buildServer({ deps, logger: log.logger });
    const review = admissionReview(pod("erp", { "sm-injector.io/env.A": "erp/a/b" }, "p".repeat(100_000)), {
      userInfo: { username: "u".repeat(100_000) },
    });
    const res = await app.inject({ method: "POST", url: "/mutate", payload: review });
    const body = res.json() as Review;
    assert.equal(body.response.allowed, false);
    assert.ok(
      (body.response.status?.message.length ?? 0) <= 33 * 1024,
      `denial message of ${body.response.status?.message.length} characters`,
    );
    const line = log.lines.find((l) => l.includes('"msg":"admission"'));
    assert.ok(line);
    assert.ok(line.length < 16 * 1024, `audit line of ${line.length} bytes`);
    const audit = JSON.parse(line) as Record<string, string>;
    assert.match(audit.pod ?? "", /^p+… \(\d+ more characters\)$/);
    assert.match(audit.user ?? "", /^u+… \(\d+ more characters\)$/);
    // Cut by the decision (the exception's text) or by the audit line, whichever comes first.
    assert.ok((audit.message ?? "").length <= 4096 + 64, `audit message of ${audit.message?.length}`);
    assert.ok(!(audit.message ?? "").includes("x".repeat(5000)), "the API error text is cut");
    await app.close();
  });
});

describe("metric labels are bounded", () => {
  const flood = async (namespaceExists?: (ns: string) => Promise<boolean>) => {
    const { app, metrics } = buildServer({
      deps: okDeps,
      logger: pino({ level: "silent" }),
      ...(namespaceExists && { namespaceExists }),
    });
    for (let i = 0; i < 1500; i++) {
      const ns = `random-${i.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      const res = await app.inject({
        method: "POST",
        url: "/mutate",
        payload: admissionReview(pod(ns, { "sm-injector.io/env.A": "erp/a/b" })),
      });
      assert.equal(res.statusCode, 200);
    }
    await new Promise((r) => setImmediate(r));
    const values = (await metrics.injections.get()).values;
    await app.close();
    return values;
  };

  test("requests naming 1,500 random namespaces create at most 1,000 namespace series plus one", async () => {
    const values = await flood();
    assert.ok(values.length <= 1001, `${values.length} series`);
    const other = values.find((v) => v.labels.namespace === "_other");
    assert.equal(other?.value, 500);
  });

  test("namespaces the API server says do not exist are counted as _other", async () => {
    const values = await flood(async () => false);
    assert.deepEqual(
      values.map((v) => [v.labels.namespace, v.value]),
      [["_other", 1500]],
    );
  });
});

describe("slow-client flags", () => {
  const base = ["--image", "x", "--tls-cert-file", "c", "--tls-key-file", "k"];
  test("defaults, and a body budget that cannot hold one body at the limit is refused", () => {
    const config = loadWebhookConfig(base, {});
    assert.equal(config.requestTimeoutSeconds, 4);
    assert.equal(config.maxConnections, 512);
    assert.equal(config.maxInFlightBodyBytes, 32 * 1024 * 1024);
    assert.throws(
      () => loadWebhookConfig([...base, "--max-in-flight-body-bytes", "4000000"], {}),
      /--max-in-flight-body-bytes \(SM_INJECTOR_MAX_IN_FLIGHT_BODY_BYTES\): must be at least twice --body-limit-bytes \(6291456\)/,
    );
    assert.throws(
      () => loadWebhookConfig(base, { SM_INJECTOR_REQUEST_TIMEOUT_SECONDS: "0" }),
      /--request-timeout-seconds \(SM_INJECTOR_REQUEST_TIMEOUT_SECONDS\)/,
    );
  });
});
