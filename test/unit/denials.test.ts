// Every way admission refuses a pod has a stable code (src/admission/denials.ts): each one is made
// to happen here through the HTTP layer (buildServer().inject()), and must come back with its HTTP
// status, in the audit line's `denial` field and in sm_injector_admission_denials_total{code}.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { pino } from "pino";
import { DENIAL_CODES, DENIALS, type DenialCode } from "../../src/admission/denials.ts";
import type { ReviewDeps } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { parseSecretPolicy } from "../../src/contract/policy.ts";
import { buildServer } from "../../src/webhook/server.ts";
import { admissionReview } from "../helpers/webhook.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const deps: ReviewDeps = {
  config,
  lookupServiceAccount: async () => ({ roleArn: "arn:aws:iam::123456789012:role/app" }),
};
const A = { "sm-injector.io/env.A": "team-a/db#password" };

function pod(annotations: Record<string, string>, containers: unknown = [{ name: "app", image: "a:1" }]) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "team-a", labels: { "sm-injector.io/inject": "true" }, annotations },
    spec: { securityContext: { runAsUser: 1000 }, containers },
  };
}

/** 500 references with 200-byte JSON keys: within every annotation limit, a ~147 KB spec. */
function manyKeyedReferences(): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (let i = 0; i < 500; i++)
    annotations[`sm-injector.io/env.V${i}`] = `team-a/db#${String(i).padEnd(200, "k")}`;
  return annotations;
}

/** An AdmissionReview that would parse into over a million values (see json-cost.ts). */
function tooManyValues(): string {
  return JSON.stringify(admissionReview(pod(A))).replace(
    '"containers":[',
    `"x":[${"{},".repeat(1_000_000)}{}],"containers":[`,
  );
}

interface Case {
  deps?: ReviewDeps;
  payload: object | string;
  timeoutMs?: number;
}

const CASES: Record<DenialCode, Case> = {
  "malformed-pod": { payload: admissionReview(pod(A, "not a list")) },
  "limit-exceeded": { payload: admissionReview(pod({ "sm-injector.io/env.A": "x".repeat(70 * 1024) })) },
  "invalid-annotations": { payload: admissionReview(pod({ ...A, "sm-injector.io/formt": "json" })) },
  "secret-policy": {
    deps: { ...deps, lookupNamespacePolicy: async () => parseSecretPolicy("team-a/*") },
    payload: admissionReview(pod({ "sm-injector.io/env.A": "team-b/db#password" })),
  },
  "serviceaccount-lookup": {
    deps: {
      ...deps,
      lookupServiceAccount: async () => {
        throw new Error("serviceaccounts is forbidden");
      },
    },
    payload: admissionReview(pod(A)),
  },
  "namespace-lookup": {
    deps: {
      ...deps,
      lookupNamespacePolicy: async () => {
        throw new Error("namespaces is forbidden");
      },
    },
    payload: admissionReview(pod(A)),
  },
  "spec-too-large": { payload: admissionReview(pod(manyKeyedReferences())) },
  "too-many-json-values": { payload: tooManyValues() },
  timeout: {
    // A Kubernetes API that never answers.
    deps: { ...deps, lookupNamespacePolicy: () => new Promise(() => {}) },
    payload: admissionReview(pod(A)),
    timeoutMs: 300,
  },
  "internal-error": {
    deps: {
      // A dependency that blows up where nothing expects it to (a bug, not an API error).
      get config(): never {
        throw new TypeError("Cannot read properties of undefined (reading 'image')");
      },
      lookupServiceAccount: deps.lookupServiceAccount,
    },
    payload: admissionReview(pod(A)),
  },
};

function capturedAudits() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return {
    logger: pino({ level: "info" }, stream),
    audits: () => lines.filter((l) => l.msg === "admission"),
  };
}

/** The denial counter's value per code, read from /metrics. */
async function denialCounts(app: ReturnType<typeof buildServer>["app"]): Promise<Map<string, number>> {
  const text = (await app.inject({ method: "GET", url: "/metrics" })).body;
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/^sm_injector_admission_denials_total\{code="([^"]*)"\} (\d+)$/gm))
    counts.set(m[1] as string, Number(m[2]));
  return counts;
}

describe("every denial carries its code", () => {
  test("each code has a case here", () => {
    assert.deepEqual(Object.keys(CASES).sort(), [...DENIAL_CODES].sort());
  });

  for (const code of DENIAL_CODES) {
    test(code, { timeout: 20_000 }, async () => {
      const c = CASES[code];
      const log = capturedAudits();
      const { app } = buildServer({
        deps: c.deps ?? deps,
        logger: log.logger,
        ...(c.timeoutMs !== undefined && { limits: { requestTimeoutMs: c.timeoutMs } }),
      });
      const res = await app.inject({
        method: "POST",
        url: "/mutate",
        payload: c.payload,
        headers: { "content-type": "application/json" },
      });
      assert.equal(res.statusCode, 200, res.body.slice(0, 300));
      const response = (res.json() as { response: { allowed: boolean; status?: { code: number } } }).response;
      assert.equal(response.allowed, false);
      assert.equal(response.status?.code, DENIALS[code].status);
      const audits = log.audits();
      assert.equal(audits.length, 1);
      assert.equal(audits[0]?.denial, code);
      const counts = await denialCounts(app);
      assert.deepEqual(
        [...counts].filter(([, n]) => n > 0),
        [[code, 1]],
      );
      await app.close();
    });
  }
});

describe("the denial counter", () => {
  test("starts with every code at 0 and no other label value; an admitted pod counts nothing", async () => {
    const log = capturedAudits();
    const { app } = buildServer({ deps, logger: log.logger });
    const counts = await denialCounts(app);
    assert.deepEqual([...counts.keys()].sort(), [...DENIAL_CODES].sort());
    assert.ok([...counts.values()].every((n) => n === 0));
    const res = await app.inject({ method: "POST", url: "/mutate", payload: admissionReview(pod(A)) });
    assert.equal((res.json() as { response: { allowed: boolean } }).response.allowed, true, res.body);
    assert.ok([...(await denialCounts(app)).values()].every((n) => n === 0));
    assert.equal(log.audits()[0]?.denial, undefined);
    await app.close();
  });
});
