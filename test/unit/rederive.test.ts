// stripInjection takes sm-injector's additions off a pod
// (held to be the exact inverse of mutatePod by a property test), and re-deriving an injected pod
// changes nothing (the decision on a reinvocation). The forged claims: forged-claims.test.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import fc from "fast-check";
import { decideInjection } from "../../src/admission/decide.ts";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import type { ServiceAccountIdentity } from "../../src/mutate/identity.ts";
import { mutatePod } from "../../src/mutate/pod.ts";
import { stripInjection, stripObjects } from "../../src/mutate/strip.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const ROLE = "arn:aws:iam::123456789012:role/app";

// --- generated pods, as the API server serialises them (no empty lists: omitempty) -----------------

const nonEmpty = <T>(arb: fc.Arbitrary<T>, max = 3) =>
  fc.option(fc.array(arb, { minLength: 1, maxLength: max }), { nil: undefined });

const userVolumeNames = ["data", "cache", "aws-iam-token"];
const envVar = fc.oneof(
  fc.record({
    name: fc.constantFrom("X", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"),
    value: fc.constantFrom("1", "eu-west-2", "http://e"),
  }),
  fc.constant({ name: "AWS_ROLE_ARN", value: ROLE }),
  fc.constant({
    name: "AWS_WEB_IDENTITY_TOKEN_FILE",
    value: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
  }),
  fc.constant({ name: "V", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }),
);
const mount = fc.record({
  name: fc.constantFrom(...userVolumeNames),
  mountPath: fc.constantFrom("/data", "/var/run/secrets/eks.amazonaws.com/serviceaccount", "/run/other"),
});
const command = fc.array(
  fc.constantFrom(
    "/app/server",
    "--port",
    "8080",
    "/bin/sh",
    "-c",
    '. \'/run/sm-injector/env\' && exec "$0" "$@"',
  ),
  {
    minLength: 1,
    maxLength: 4,
  },
);

function containerArb(name: string, extraEnv: fc.Arbitrary<{ name: string; value?: string }> = envVar) {
  return fc.record(
    {
      name: fc.constant(name),
      image: fc.constant(`${name}:1`),
      command: fc.option(command, { nil: undefined }),
      args: nonEmpty(fc.constantFrom("a", "b")),
      env: nonEmpty(extraEnv),
      volumeMounts: nonEmpty(mount, 2),
      securityContext: fc.option(fc.record({ runAsUser: fc.integer({ min: 1, max: 5000 }) }), {
        nil: undefined,
      }),
    },
    { requiredKeys: ["name", "image"] },
  );
}

const annotationsArb = (names: string[]) =>
  fc.record(
    {
      "sm-injector.io/env.A": fc.constantFrom("erp/p/a", "erp/p/db#password"),
      "sm-injector.io/env-from.db": fc.constant("erp/p/json?prefix=DB_"),
      "sm-injector.io/format": fc.constantFrom("shell", "dotenv", "json", "files"),
      "sm-injector.io/output-dir": fc.constantFrom("/run/sm-injector", "/run/secrets-here"),
      "sm-injector.io/file-name": fc.constantFrom("app.env"),
      "sm-injector.io/containers": fc.subarray(names, { minLength: 1 }).map((l) => l.join(",")),
      "sm-injector.io/wrap-command": fc.oneof(
        fc.constantFrom("true", "false"),
        fc.subarray(names, { minLength: 1 }).map((l) => l.join(", ")),
      ),
      "sm-injector.io/init-position": fc.constantFrom("first", "last"),
      "other.example.com/note": fc.constant("kept"),
    },
    { requiredKeys: ["sm-injector.io/env.A"] },
  );

/**
 * A pod that compiles (compile decides which; the rest are filtered), with user init containers
 * (which the annotations may target and wrap too) and volumes.
 */
function podArb(extraEnv?: fc.Arbitrary<{ name: string; value?: string }>) {
  return fc
    .tuple(
      fc.uniqueArray(fc.constantFrom("app", "api", "worker"), { minLength: 1, maxLength: 3 }),
      fc.uniqueArray(fc.constantFrom("migrate", "wait"), { maxLength: 2 }),
    )
    .chain(([names, initNames]) =>
      fc.record(
        {
          apiVersion: fc.constant("v1"),
          kind: fc.constant("Pod"),
          metadata: fc.record({
            name: fc.constant("p"),
            labels: fc.constant({ "sm-injector.io/inject": "true" }),
            annotations: annotationsArb([...names, ...initNames]),
          }),
          spec: fc.record(
            {
              serviceAccountName: fc.constantFrom("api", "default"),
              securityContext: fc.option(fc.record({ fsGroup: fc.integer({ min: 1, max: 5000 }) }), {
                nil: undefined,
              }),
              containers: fc.tuple(...names.map((n) => containerArb(n, extraEnv))),
              initContainers:
                initNames.length === 0
                  ? fc.constant(undefined)
                  : fc.tuple(...initNames.map((n) => containerArb(n, extraEnv))),
              volumes: fc.constant(userVolumeNames.map((name) => ({ name, emptyDir: {} }))),
            },
            { requiredKeys: ["containers", "volumes"] },
          ),
        },
        { requiredKeys: ["apiVersion", "kind", "metadata", "spec"] },
      ),
    )
    .map((p) => JSON.parse(JSON.stringify(p)) as V1Pod);
}

const identityArb = fc.option(fc.constant<ServiceAccountIdentity>({ roleArn: ROLE }), { nil: undefined });

function mutated(pod: V1Pod, sa: ServiceAccountIdentity | undefined) {
  const compiled = compileInjectionSpec(pod, config);
  if (!compiled.ok) return undefined;
  return { pod: mutatePod(pod, compiled.spec, config, sa).pod, spec: compiled.spec };
}

/** Through JSON, as the API server would send the mutated pod back (no shared objects, no undefined). */
const viaJson = <T>(v: T): T => JSON.parse(JSON.stringify(v));

describe("stripInjection is the inverse of mutatePod", () => {
  test("strip(mutate(p)) deep-equals p over generated pods", () => {
    let checked = 0;
    let initTargeted = 0;
    fc.assert(
      fc.property(podArb(), identityArb, (pod, sa) => {
        const out = mutated(pod, sa);
        fc.pre(out !== undefined);
        checked++;
        const { spec } = out as NonNullable<typeof out>;
        if (pod.spec?.initContainers?.some((c) => spec.targets.includes(c.name))) initTargeted++;
        assert.deepStrictEqual(stripInjection(viaJson(out?.pod as V1Pod), spec), pod);
        // The spec the strip needs is the one the annotations compile to without sm-injector's objects.
        const again = compileInjectionSpec(stripObjects(viaJson(out?.pod as V1Pod)), config);
        assert.ok(again.ok);
        assert.deepStrictEqual(again.spec, spec);
      }),
      { numRuns: 400 },
    );
    assert.ok(checked >= 200, `only ${checked} generated pods compiled`);
    assert.ok(initTargeted >= 20, `only ${initTargeted} compiled pods targeted an init container`);
  });

  test("re-deriving an injected pod changes nothing, also where mutatePod is not one-to-one (a container's own path variable)", async () => {
    const ownPathVariable = fc.oneof(
      envVar,
      fc.constantFrom(
        { name: "SM_INJECTOR_ENV_FILE", value: "/run/sm-injector/env" },
        { name: "SM_INJECTOR_SECRETS_DIR", value: "/run/sm-injector" },
        { name: "SM_INJECTOR_ENV_FILE", value: "/elsewhere" },
      ),
    );
    await fc.assert(
      fc.asyncProperty(podArb(ownPathVariable), identityArb, async (pod, sa) => {
        const out = mutated(pod, sa);
        fc.pre(out !== undefined);
        const d = await decideInjection(viaJson(out?.pod), "default", { config, serviceAccount: () => sa });
        assert.equal(d.verdict, "unchanged", "patch" in d ? d.patch : "");
      }),
      { numRuns: 300 },
    );
  });

  test("a pod without sm-injector's additions is returned as it is", () => {
    const pod: V1Pod = {
      metadata: { name: "p" },
      spec: { containers: [{ name: "c", env: [{ name: "X", value: "1" }] }] },
    };
    assert.deepStrictEqual(
      stripInjection(pod, {
        targets: ["c"],
        wrap: ["c"],
        format: "shell",
        outputDir: "/run/x",
        fileName: "env",
      }),
      pod,
    );
  });
});

describe("reinvocation", () => {
  test("after another webhook appended an identity to the app container: the init container takes it, and only it changes", async () => {
    const pod: V1Pod = {
      metadata: {
        name: "r",
        labels: { "sm-injector.io/inject": "true" },
        annotations: { "sm-injector.io/env.A": "erp/a" },
      },
      spec: { containers: [{ name: "app", image: "a:1", env: [{ name: "X", value: "1" }] }] },
    };
    const ctx = { config, serviceAccount: () => undefined };
    const first = await decideInjection(pod, "default", ctx);
    assert.ok("pod" in first);
    // What EKS's pod identity webhook appends after us.
    const after = viaJson(first.pod);
    const app = after.spec?.containers[0] as V1Container;
    const tokenDir = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    app.env?.push(
      { name: "AWS_ROLE_ARN", value: ROLE },
      { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: `${tokenDir}/token` },
    );
    app.volumeMounts?.push({ name: "aws-iam-token", mountPath: tokenDir, readOnly: true });
    after.spec?.volumes?.push({
      name: "aws-iam-token",
      projected: { sources: [{ serviceAccountToken: { path: "token" } }] },
    });

    const second = await decideInjection(after, "default", ctx);
    assert.ok("pod" in second);
    assert.equal(second.verdict, "injected");
    assert.equal(second.identity, "container");
    const ops = JSON.parse(second.patch) as Array<{ path: string }>;
    assert.ok(ops.length > 0);
    assert.deepEqual(
      ops.filter((o) => !o.path.startsWith("/spec/initContainers/0/")),
      [],
      "the app container, its variables and the volumes keep their order",
    );
    const init = second.pod.spec?.initContainers?.[0];
    assert.equal(init?.env?.find((e) => e.name === "AWS_ROLE_ARN")?.value, ROLE);
    assert.ok(init?.volumeMounts?.some((m) => m.name === "aws-iam-token" && m.mountPath === tokenDir));

    const third = await decideInjection(viaJson(second.pod), "default", ctx);
    assert.equal(third.verdict, "unchanged");
  });

  test("what kube-apiserver adds between the passes (token mount, defaults) is no change", async () => {
    const pod: V1Pod = {
      metadata: {
        name: "r",
        labels: { "sm-injector.io/inject": "true" },
        annotations: { "sm-injector.io/env.A": "erp/a" },
      },
      spec: {
        serviceAccountName: "api",
        containers: [{ name: "app", image: "a:1" }],
        volumes: [
          {
            name: "kube-api-access-x1",
            projected: { sources: [{ serviceAccountToken: { path: "token" } }] },
          },
        ],
      },
    };
    const ctx = { config, serviceAccount: () => ({ roleArn: ROLE }) };
    const first = await decideInjection(pod, "default", ctx);
    assert.ok("pod" in first);
    const stored = viaJson(first.pod);
    const init = stored.spec?.initContainers?.[0] as V1Container;
    init.terminationMessagePath = "/dev/termination-log";
    for (const e of init.env ?? []) if (e.valueFrom?.fieldRef) e.valueFrom.fieldRef.apiVersion = "v1";
    init.volumeMounts?.push({
      name: "kube-api-access-x1",
      mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
      readOnly: true,
    });
    for (const v of stored.spec?.volumes ?? []) if (v.projected) v.projected.defaultMode = 420;
    const again = await decideInjection(stored, "default", ctx);
    assert.equal(again.verdict, "unchanged", "patch" in again ? again.patch : "");

    // Anything else on the init container is sm-injector's to decide: a hand-added mount goes.
    init.volumeMounts?.push({ name: "kube-api-access-x1", mountPath: "/app", readOnly: true });
    const third = await decideInjection(stored, "default", ctx);
    assert.equal(third.verdict, "injected");
    assert.ok("pod" in third);
    assert.equal(
      third.pod.spec?.initContainers?.[0]?.volumeMounts?.some((m) => m.mountPath === "/app"),
      false,
    );
  });
});
