// Every route of the webhook, in process through buildServer().inject() (no socket, no bundle): what
// the API server, the kubelet's probes and Prometheus get back. The answers are built by
// src/admission/responses.ts; these cases hold the HTTP layer to them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import {
  allowedResponse,
  deniedResponse,
  patchedResponse,
  reviewResponse,
} from "../../src/admission/responses.ts";
import type { ReviewDeps } from "../../src/admission/review.ts";
import { warmUpDecision } from "../../src/admission/warm-up.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { buildServer } from "../../src/webhook/server.ts";
import { admissionReview } from "../helpers/webhook.ts";

const config = InjectorConfigSchema.parse({ image: "registry.example.com/sm-injector:test" });
const deps: ReviewDeps = { config, lookupServiceAccount: async () => ({}) };
const quiet = pino({ level: "silent" });

const pod = (annotations: Record<string, string>, labels = { "sm-injector.io/inject": "true" }) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "api-1", namespace: "erp", labels, annotations },
  spec: {
    securityContext: { runAsUser: 1000 },
    containers: [
      {
        name: "api",
        image: "api:1",
        command: ["/app"],
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

type Answer = {
  apiVersion: string;
  kind: string;
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string; reason: string };
    patchType?: string;
    patch?: string;
    warnings?: string[];
  };
};

async function review(
  body: object | string,
  opts: Parameters<typeof buildServer>[0] = { deps, logger: quiet },
) {
  const { app } = buildServer(opts);
  const res = await app.inject({
    method: "POST",
    url: "/mutate",
    payload: body,
    headers: { "content-type": "application/json" },
  });
  await app.close();
  return res;
}

const uidOf = (r: object) => (r as { request: { uid: string } }).request.uid;

describe("POST /mutate answers an AdmissionReview", () => {
  test("allowed: a pod that does not opt in is admitted unchanged, no patch", async () => {
    const body = admissionReview(pod({}, { app: "api" } as never));
    const res = await review(body);
    assert.equal(res.statusCode, 200);
    const answer = res.json() as Answer;
    assert.deepEqual(answer, reviewResponse(allowedResponse(uidOf(body))));
  });

  test("denied: a bad annotation is refused with 400, its reason and a message naming the annotation", async () => {
    const body = admissionReview(pod({ "sm-injector.io/env.1BAD": "erp/a/b" }));
    const res = await review(body);
    assert.equal(res.statusCode, 200);
    const { response } = res.json() as Answer;
    assert.equal(response.uid, uidOf(body));
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 400);
    assert.equal(response.status?.reason, "BadRequest");
    assert.match(response.status?.message ?? "", /sm-injector\.io\/env\.1BAD/);
    assert.equal(response.patch, undefined);
  });

  test("patched: an opted-in pod is admitted with a base64 JSON patch adding the init container", async () => {
    const body = admissionReview(pod({ "sm-injector.io/env.DB_PASSWORD": "erp/a/db#password" }));
    const res = await review(body);
    const { response } = res.json() as Answer;
    assert.equal(response.uid, uidOf(body));
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, "JSONPatch");
    const ops = JSON.parse(Buffer.from(response.patch ?? "", "base64").toString("utf8")) as Array<{
      op: string;
      path: string;
      value?: unknown;
    }>;
    assert.ok(
      ops.some(
        (o) =>
          o.path.startsWith("/spec/initContainers") && JSON.stringify(o.value).includes("sm-injector-fetch"),
      ),
      JSON.stringify(ops).slice(0, 500),
    );
  });

  test("415: a body that is not JSON is not parsed", async () => {
    const { app } = buildServer({ deps, logger: quiet });
    const res = await app.inject({
      method: "POST",
      url: "/mutate",
      payload: "apiVersion: admission.k8s.io/v1",
      headers: { "content-type": "text/plain" },
    });
    assert.equal(res.statusCode, 415);
    await app.close();
  });

  test("413: a body over --body-limit-bytes is refused unread", async () => {
    const body = JSON.stringify(admissionReview(pod({ note: "x".repeat(4096) })));
    const res = await review(body, { deps, logger: quiet, bodyLimitBytes: 2048 });
    assert.equal(res.statusCode, 413);
    assert.match((res.json() as { error: string }).error, /^sm-injector: /);
  });

  test("too many JSON values: a denial carrying the uid, not a bare 400", async () => {
    const parsed = admissionReview(pod({})) as { request: { uid: string } };
    const body = JSON.stringify(parsed).replace(
      '"containers":[',
      `"x":[${"[],".repeat(100_001)}[]],"containers":[`,
    );
    const res = await review(body);
    assert.equal(res.statusCode, 200);
    const { response } = res.json() as Answer;
    assert.equal(response.uid, parsed.request.uid);
    assert.equal(response.allowed, false);
    assert.equal(response.status?.code, 400);
  });

  test("400: a JSON body that is not an AdmissionReview says why", async () => {
    const res = await review({ kind: "AdmissionReview" });
    assert.equal(res.statusCode, 400);
    assert.match((res.json() as { error: string }).error, /not an AdmissionReview v1/);
  });

  test("404 names the webhook's path", async () => {
    const { app } = buildServer({ deps, logger: quiet });
    const res = await app.inject({ method: "GET", url: "/mutate/x" });
    assert.equal(res.statusCode, 404);
    assert.match((res.json() as { error: string }).error, /POST \/mutate/);
    await app.close();
  });
});

describe("probes", () => {
  test("/healthz is always ok; /readyz only after warm-up, and no longer while draining", async () => {
    const webhook = buildServer({ deps, logger: quiet, ready: false });
    const get = async (url: string) => {
      const r = await webhook.app.inject({ method: "GET", url });
      return [r.statusCode, (r.json() as { status: string }).status];
    };
    assert.deepEqual(await get("/healthz"), [200, "ok"]);
    assert.deepEqual(await get("/readyz"), [503, "starting"]);
    warmUpDecision(config, 1);
    webhook.setReady(true);
    assert.deepEqual(await get("/readyz"), [200, "ok"]);
    assert.deepEqual(await get("/healthz"), [200, "ok"]);
    webhook.setReady(false);
    assert.deepEqual(await get("/readyz"), [503, "shutting down"]);
    assert.deepEqual(await get("/healthz"), [200, "ok"]);
    await webhook.app.close();
  });

  test("a server built without `ready: false` is ready at once (what tests and benches build)", async () => {
    const { app } = buildServer({ deps, logger: quiet });
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    await app.close();
  });

  test("/metrics is Prometheus text with the admission counters, counted per result and denial code", async () => {
    const { app } = buildServer({ deps, logger: quiet });
    await app.inject({
      method: "POST",
      url: "/mutate",
      payload: admissionReview(pod({ "sm-injector.io/formt": "x" })),
    });
    const res = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain/);
    assert.match(res.body, /^sm_injector_admission_requests_total\{result="denied"\} 1$/m);
    assert.match(res.body, /^sm_injector_admission_denials_total\{code="invalid-annotations"\} 1$/m);
    assert.match(res.body, /^sm_injector_process_cpu_seconds_total /m);
    await app.close();
  });
});

describe("response constructors", () => {
  test("allowed, denied and patched answers, with warnings only when there are some", () => {
    assert.deepEqual(allowedResponse("u"), { uid: "u", allowed: true });
    assert.deepEqual(allowedResponse("u", ["w"]), { uid: "u", allowed: true, warnings: ["w"] });
    assert.deepEqual(deniedResponse("u", 403, "sm-injector: no"), {
      uid: "u",
      allowed: false,
      status: { code: 403, message: "sm-injector: no", reason: "Forbidden" },
    });
    assert.deepEqual(deniedResponse("u", 500, "m", ["w"]).status?.reason, "InternalError");
    const p = patchedResponse("u", '[{"op":"add","path":"/a","value":1}]');
    assert.equal(p.patchType, "JSONPatch");
    assert.equal(Buffer.from(p.patch ?? "", "base64").toString(), '[{"op":"add","path":"/a","value":1}]');
    assert.equal(p.warnings, undefined);
    assert.deepEqual(reviewResponse(p), {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: p,
    });
  });
});
