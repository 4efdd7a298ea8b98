// Like istio's injection fuzzing: arbitrary annotations and pod shapes never crash the admission
// path, every answer is a clear allow or deny, and an injected pod is injected exactly once.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type AdmissionRequest, reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { applyPatch } from "../helpers/json-patch.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const deps = { config, lookupServiceAccount: async () => ({ roleArn: "arn:aws:iam::123456789012:role/x" }) };

const keys = fc.oneof(
  fc.constantFrom(
    "env.A",
    "env.DB_PASSWORD",
    "env-from",
    "env-from.x",
    "secrets",
    "region",
    "format",
    "output-dir",
    "file-name",
    "file-mode",
    "containers",
    "wrap-command",
    "init-position",
    "timeout-seconds",
    "restart-on-rotation",
    "status",
  ),
  fc.string({ maxLength: 12 }).map((s) => `env.${s}`),
  fc.string({ maxLength: 12 }),
);
const values = fc.oneof(
  fc.constantFrom(
    "erp/production/database",
    "erp/p/rds#password",
    "erp/p/x?versionStage=AWSPREVIOUS",
    "true",
    "false",
    "app",
    "files",
    "dotenv",
    "/run/x",
    "0440",
    "first",
    "30",
    "eu-west-1",
    "- secret: a\n  env: B\n",
    "[1,2",
    "{}",
    "- {}",
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
);

const container = fc.record(
  {
    name: fc.constantFrom("app", "api", "worker"),
    image: fc.constant("x:1"),
    command: fc.option(fc.array(fc.string({ maxLength: 5 }), { minLength: 1, maxLength: 3 }), {
      nil: undefined,
    }),
    env: fc.option(
      fc.array(
        fc.record({
          name: fc.constantFrom("AWS_REGION", "AWS_ROLE_ARN", "X"),
          value: fc.string({ maxLength: 10 }),
        }),
        { maxLength: 3 },
      ),
      { nil: undefined },
    ),
    securityContext: fc.option(fc.record({ runAsUser: fc.integer({ min: 0, max: 5000 }) }), {
      nil: undefined,
    }),
  },
  { requiredKeys: ["name", "image"] },
);

type Outcome = Awaited<ReturnType<typeof reviewPod>>["result"];

/** One admission through reviewPod with the invariants every answer must keep; returns the result. */
async function admitAndCheck(
  annotations: Record<string, string>,
  containers: object[],
  securityContext: object | undefined,
): Promise<Outcome> {
  // Through JSON, as the API server sends it (no undefined fields).
  const pod = JSON.parse(
    JSON.stringify({
      metadata: { name: "p", labels: { "sm-injector.io/inject": "true" }, annotations },
      spec: { containers, ...(securityContext && { securityContext }) },
    }),
  );
  const request: AdmissionRequest = {
    uid: "u",
    kind: { group: "", version: "v1", kind: "Pod" },
    operation: "CREATE",
    namespace: "ns",
    object: pod,
  };
  const out = await reviewPod(request, deps);
  assert.equal(out.response.uid, "u");
  if (!out.response.allowed) {
    assert.match(out.response.status?.message ?? "", /^sm-injector: /);
    assert.ok(out.denial, "every denial carries a code");
    return out.result;
  }
  assert.equal(out.result, "injected");
  const patched = applyPatch(pod, JSON.parse(Buffer.from(out.response.patch as string, "base64").toString()));
  const inits = (patched.spec as { initContainers?: { name: string }[] }).initContainers ?? [];
  assert.equal(inits.filter((c) => c.name === "sm-injector-fetch").length, 1);
  const again = await reviewPod({ ...request, object: patched }, deps);
  assert.equal(again.result, "unchanged", "a second admission must not inject again");
  return out.result;
}

const securityContexts = fc.option(fc.record({ fsGroup: fc.integer({ min: 1, max: 5000 }) }), {
  nil: undefined,
});

test("random annotations and pod shapes: never a crash, always allow or a clear deny, injection idempotent", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.dictionary(
        keys.map((k) => `sm-injector.io/${k}`),
        values,
        { maxKeys: 6 },
      ),
      fc.uniqueArray(container, { minLength: 1, maxLength: 3, selector: (c) => c.name }),
      securityContexts,
      async (annotations, containers, securityContext) => {
        await admitAndCheck(annotations, containers, securityContext);
      },
    ),
    { numRuns: 400 },
  );
});

// Mostly valid input: names, references and options a user would write, so that the injection
// path itself (mutation, patch, idempotence) is what gets fuzzed, not only the refusals.
const envName = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,11}$/).map((n) => `APP_${n}`);
const secretId = fc
  .tuple(
    fc.constantFrom("production", "staging", "dev"),
    fc.constantFrom("database", "jwt", "rds", "s3"),
    fc.stringMatching(/^[a-z][a-z0-9_+=.@-]{0,15}$/),
  )
  .map(([e, c, n]) => `erp/${e}/${c}/${n}`);
const reference = fc
  .tuple(
    secretId,
    fc.option(fc.stringMatching(/^[a-z_][a-z0-9_]{0,9}$/), { nil: undefined }),
    fc.option(fc.constantFrom("?versionStage=AWSPREVIOUS", "?versionStage=AWSCURRENT"), { nil: undefined }),
  )
  .map(([id, key, stage]) => `${id}${stage ?? ""}${key ? `#${key}` : ""}`);
const validOptions = fc.record(
  {
    "sm-injector.io/format": fc.constantFrom("shell", "dotenv", "json", "files"),
    "sm-injector.io/region": fc.constantFrom("eu-west-1", "us-east-1"),
    "sm-injector.io/timeout-seconds": fc.integer({ min: 1, max: 300 }).map(String),
    "sm-injector.io/init-position": fc.constantFrom("first", "last"),
    "sm-injector.io/output-dir": fc.constantFrom("/run/sm-injector", "/run/app-secrets", "/secrets/app"),
  },
  { requiredKeys: [] },
);
const validAnnotations = fc
  .tuple(
    fc.dictionary(envName, reference, { minKeys: 1, maxKeys: 5 }),
    fc.option(fc.tuple(fc.stringMatching(/^[a-z]{1,8}$/), secretId), { nil: undefined }),
    validOptions,
  )
  .map(([env, from, options]) => ({
    ...Object.fromEntries(Object.entries(env).map(([k, v]) => [`sm-injector.io/env.${k}`, v])),
    ...(from && { [`sm-injector.io/env-from.${from[0]}`]: from[1] }),
    ...options,
  }));
const validContainer = fc.record({
  name: fc.constantFrom("app", "api", "worker"),
  image: fc.constant("x:1"),
  command: fc.option(fc.constant(["/app"]), { nil: undefined }),
  securityContext: fc.option(fc.record({ runAsUser: fc.integer({ min: 1, max: 5000 }) }), { nil: undefined }),
});

test("valid-biased annotations: most pods are injected, and each injection keeps every invariant", async () => {
  const results = new Map<Outcome, number>();
  await fc.assert(
    fc.asyncProperty(
      validAnnotations,
      fc.uniqueArray(validContainer, { minLength: 1, maxLength: 3, selector: (c) => c.name }),
      securityContexts,
      async (annotations, containers, securityContext) => {
        const r = await admitAndCheck(annotations, containers, securityContext);
        results.set(r, (results.get(r) ?? 0) + 1);
      },
    ),
    { numRuns: 300 },
  );
  // A generator that drifts into refusals (or a decision that refuses valid pods) fuzzes nothing.
  const injected = results.get("injected") ?? 0;
  assert.ok(
    injected >= 240,
    `only ${injected} of 300 valid-biased pods were injected: ${JSON.stringify([...results])}`,
  );
});

test("non-pod and non-CREATE requests are allowed without a patch", async () => {
  for (const request of [
    { uid: "a", kind: { group: "apps", version: "v1", kind: "Deployment" }, operation: "CREATE", object: {} },
    { uid: "b", kind: { group: "", version: "v1", kind: "Pod" }, operation: "UPDATE", object: {} },
    {
      uid: "c",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      subResource: "ephemeralcontainers",
      object: {},
    },
  ] as AdmissionRequest[]) {
    const out = await reviewPod(request, deps);
    assert.equal(out.response.allowed, true);
    assert.equal(out.response.patch, undefined);
    assert.equal(out.result, "skipped");
  }
});

test("a failing ServiceAccount look-up refuses the pod (fail closed) and says why", async () => {
  const out = await reviewPod(
    {
      uid: "u",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "erp",
      object: {
        metadata: {
          labels: { "sm-injector.io/inject": "true" },
          annotations: { "sm-injector.io/env.A": "erp/a" },
        },
        spec: { serviceAccountName: "api", containers: [{ name: "c" }] },
      },
    },
    {
      config,
      lookupServiceAccount: async () => Promise.reject(new Error("HTTP 403 from the Kubernetes API")),
    },
  );
  assert.equal(out.response.allowed, false);
  assert.match(
    out.response.status?.message ?? "",
    /could not read ServiceAccount erp\/api .*HTTP 403.*get serviceaccounts/,
  );
});
