// Every refusal the annotation compiler can give, with the words a user will read.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });

function pod(annotations: Record<string, string>, spec: Partial<NonNullable<V1Pod["spec"]>> = {}): V1Pod {
  return {
    metadata: { name: "p", labels: { "sm-injector.io/inject": "true" }, annotations },
    spec: { containers: [{ name: "api", image: "api:1", command: ["app"] }], ...spec },
  };
}

function errorsOf(p: V1Pod, cfg = config): string[] {
  const r = compileInjectionSpec(p, cfg);
  assert.ok(!r.ok, "expected a refusal");
  return r.errors;
}

const A = { "sm-injector.io/env.A": "erp/p/a" };

describe("refusals", () => {
  const cases: [string, V1Pod, RegExp][] = [
    [
      "structured form that is not YAML",
      pod({ "sm-injector.io/secrets": "- secret: [unclosed" }),
      /sm-injector.io\/secrets: is not valid YAML or JSON/,
    ],
    [
      "structured form that is not a list",
      pod({ "sm-injector.io/secrets": "secret: a" }),
      /sm-injector.io\/secrets: must be a YAML or JSON list of entries/,
    ],
    [
      "structured entry without secret",
      pod({ "sm-injector.io/secrets": "- env: A" }),
      /sm-injector.io\/secrets\[0\].secret: secret \(a name or ARN\) is required/,
    ],
    [
      "env with prefix",
      pod({ "sm-injector.io/secrets": "- {secret: a, env: A, prefix: X_}" }),
      /\[0\]: prefix expands a JSON secret into many variables and cannot be combined with env/,
    ],
    [
      "key without env",
      pod({ "sm-injector.io/secrets": "- {secret: a, key: k}" }),
      /\[0\]: key "k" needs env, the variable to put it in/,
    ],
    [
      "rename to a bad name",
      pod({ "sm-injector.io/secrets": "- {secret: a, rename: {k: 1X}}" }),
      /\[0\]\.rename\.k: "1X" is not a valid environment variable name/,
    ],
    [
      "rename of an unlisted key",
      pod({ "sm-injector.io/secrets": "- {secret: a, keys: [x], rename: {k: K}}" }),
      /rename\.k: renames a key that keys does not list/,
    ],
    [
      "stage and id together",
      pod({
        "sm-injector.io/secrets":
          "- {secret: a, env: A, versionStage: S, versionId: 9d3d0c39-2b4b-4a5c-9b7e-0f6a1c2d3e4f}",
      }),
      /set either versionStage or versionId, not both/,
    ],
    [
      "bad region in an entry",
      pod({ "sm-injector.io/secrets": "- {secret: a, env: A, region: Europe}" }),
      /\[0\]\.region: "Europe" is not an AWS region/,
    ],
    [
      "bad env name in an entry",
      pod({ "sm-injector.io/secrets": "- {secret: a, env: my-var}" }),
      /\[0\]\.env: "my-var" is not a valid environment variable name/,
    ],
    [
      "unknown format",
      pod({ ...A, "sm-injector.io/format": "yaml" }),
      /sm-injector.io\/format: "yaml" is not a format; use one of shell, dotenv, json, files/,
    ],
    [
      "file name with a slash",
      pod({ ...A, "sm-injector.io/file-name": "../env" }),
      /sm-injector.io\/file-name: "..\/env" is not a plain file name/,
    ],
    ["relative output dir", pod({ ...A, "sm-injector.io/output-dir": "run/x" }), /must be an absolute path/],
    [
      "output dir with ..",
      pod({ ...A, "sm-injector.io/output-dir": "/run/../etc" }),
      /must not contain \. or \.\. segments/,
    ],
    [
      "output dir = a root",
      pod({ ...A, "sm-injector.io/output-dir": "/run" }),
      /is outside the allowed roots/,
    ],
    [
      "output dir over the SA token",
      pod({ ...A, "sm-injector.io/output-dir": "/var/run/secrets" }),
      /overlaps \/var\/run\/secrets\/kubernetes.io/,
    ],
    [
      "targeting an init container with init-position: last written out",
      pod(
        { ...A, "sm-injector.io/containers": "api,setup", "sm-injector.io/init-position": "last" },
        { initContainers: [{ name: "setup" }] },
      ),
      /init-position: last runs the fetch after every init container, but the init container "setup" reads the secrets/,
    ],
    [
      "targeting an unknown container: the init containers are listed too",
      pod({ ...A, "sm-injector.io/containers": "migrat" }, { initContainers: [{ name: "migrate" }] }),
      /the pod has no container "migrat" \(containers: api; init containers: migrate\)/,
    ],
    [
      "an empty container list",
      pod({ ...A, "sm-injector.io/containers": " , " }),
      /lists no container; remove it to target all containers/,
    ],
    [
      "wrapping an unknown container",
      pod({ ...A, "sm-injector.io/wrap-command": "web" }),
      /wrap-command: the pod has no container "web"/,
    ],
    [
      "wrapping an untargeted container",
      pod(
        { ...A, "sm-injector.io/containers": "api", "sm-injector.io/wrap-command": "side" },
        {
          containers: [
            { name: "api", command: ["a"] },
            { name: "side", command: ["b"] },
          ],
        },
      ),
      /container "side" is not targeted by sm-injector.io\/containers/,
    ],
    [
      "bad init position",
      pod({ ...A, "sm-injector.io/init-position": "middle" }),
      /init-position: "middle" is not allowed; use first or last/,
    ],
    [
      "bad restart-on-rotation",
      pod({ ...A, "sm-injector.io/restart-on-rotation": "yes" }),
      /restart-on-rotation: "yes" is not allowed; use "true" or "false"/,
    ],
    [
      "timeout out of range",
      pod({ ...A, "sm-injector.io/timeout-seconds": "0" }),
      /timeout-seconds: "0" must be a whole number of seconds from 1 to 300/,
    ],
    [
      "timeout not a number",
      pod({ ...A, "sm-injector.io/timeout-seconds": "1m" }),
      /timeout-seconds: "1m" must be a whole number/,
    ],
    [
      "bad region annotation",
      pod({ ...A, "sm-injector.io/region": "frankfurt" }),
      /sm-injector.io\/region: "frankfurt" is not an AWS region/,
    ],
    [
      "entry region contradicting its ARN",
      pod({
        "sm-injector.io/secrets":
          "- {secret: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:a', env: A, region: eu-west-1}",
      }),
      /region eu-west-1 contradicts the ARN's region us-east-1/,
    ],
    [
      "a prefix that is not a name",
      pod({ "sm-injector.io/env-from": "erp/p/db?prefix=my-" }),
      /prefix "my-" must be letters, digits and _/,
    ],
    ["label but no secrets", pod({}), /has the label sm-injector.io\/inject=true but no secrets to fetch/],
    [
      "a variable set twice in one list",
      pod({ "sm-injector.io/secrets": "- {secret: a, env: A}\n- {secret: b, env: A}" }),
      /\[1\]: variable A is already set by sm-injector.io\/secrets\[0\]/,
    ],
    [
      "an output dir the container already mounts",
      pod(A, { containers: [{ name: "api", volumeMounts: [{ name: "x", mountPath: "/run/sm-injector" }] }] }),
      /container api already mounts x at \/run\/sm-injector/,
    ],
    [
      "a variable bash keeps read-only",
      pod({ "sm-injector.io/env.UID": "erp/p/uid" }),
      /sm-injector.io\/env.UID: UID cannot be set by sourcing the env file \(read-only in bash/,
    ],
    [
      "a variable bash sets for itself (the encoder's list, not a copy)",
      pod({ "sm-injector.io/env.RANDOM": "erp/p/seed" }),
      /sm-injector.io\/env.RANDOM: RANDOM cannot be set by sourcing the env file \(bash keeps this variable for itself/,
    ],
    [
      "a container AWS_REGION that is not a region",
      pod(A, {
        containers: [
          { name: "api", command: ["a"], env: [{ name: "AWS_REGION", value: "Not A Region; $(id)" }] },
        ],
      }),
      /container api sets AWS_REGION to "Not A Region; \$\(id\)", which is not an AWS region/,
    ],
    [
      "a container AWS_DEFAULT_REGION that is not a region, even with the region annotation",
      pod(
        { ...A, "sm-injector.io/region": "eu-west-1" },
        {
          containers: [
            { name: "api", command: ["a"], env: [{ name: "AWS_DEFAULT_REGION", value: "eu west 1" }] },
          ],
        },
      ),
      /container api sets AWS_DEFAULT_REGION to "eu west 1", which is not an AWS region/,
    ],
    [
      "output dir over the webhook's own token directory",
      pod({ ...A, "sm-injector.io/output-dir": "/var/run/secrets/sm-injector" }),
      /overlaps \/var\/run\/secrets\/sm-injector\/eks.amazonaws.com\/serviceaccount, where sm-injector mounts/,
    ],
    [
      "output dir inside the webhook's own token directory, through /run",
      pod({
        ...A,
        "sm-injector.io/output-dir": "/run/secrets/sm-injector/eks.amazonaws.com/serviceaccount/x",
      }),
      /where sm-injector mounts the pod's identity token/,
    ],
    [
      "a pod volume named sm-injector-secrets",
      pod(A, { volumes: [{ name: "sm-injector-secrets", emptyDir: {} }] }),
      /the pod already has a volume named sm-injector-secrets, a name sm-injector reserves/,
    ],
    [
      "a pod volume named sm-injector-aws-iam-token",
      pod(A, { volumes: [{ name: "sm-injector-aws-iam-token", emptyDir: {} }] }),
      /volume named sm-injector-aws-iam-token, a name sm-injector reserves/,
    ],
    [
      "an untargeted container mounting the reserved name",
      pod(
        { ...A, "sm-injector.io/containers": "api" },
        {
          containers: [
            { name: "api", command: ["a"] },
            { name: "side", volumeMounts: [{ name: "sm-injector-secrets", mountPath: "/s" }] },
          ],
        },
      ),
      /container side mounts a volume named sm-injector-secrets/,
    ],
    [
      "a container mount inside the output dir",
      pod(A, {
        containers: [{ name: "api", volumeMounts: [{ name: "x", mountPath: "/run/sm-injector/sub" }] }],
      }),
      /container api mounts x at "\/run\/sm-injector\/sub", inside \/run\/sm-injector/,
    ],
    [
      "a container mount at the output dir, spelt through /var/run with a trailing slash",
      pod(A, {
        containers: [{ name: "api", volumeMounts: [{ name: "x", mountPath: "/var/run/sm-injector/" }] }],
      }),
      /container api already mounts x at \/run\/sm-injector/,
    ],
    [
      "a read-only container mount above the output dir",
      pod(A, {
        containers: [{ name: "api", volumeMounts: [{ name: "x", mountPath: "/run", readOnly: true }] }],
      }),
      /container api mounts x read-only at "\/run", above \/run\/sm-injector/,
    ],
    [
      "a ConfigMap mounted above the output dir",
      pod(A, {
        volumes: [{ name: "cfg", configMap: { name: "c" } }],
        containers: [{ name: "api", volumeMounts: [{ name: "cfg", mountPath: "/run" }] }],
      }),
      /container api mounts cfg read-only at "\/run"/,
    ],
    [
      "an unknown key with no near match",
      pod({ ...A, "sm-injector.io/zzzzzzzzzz": "1" }),
      /unknown sm-injector annotation. Known keys: secrets, region/,
    ],
    [
      "a misspelt env key",
      pod({ "sm-injector.io/evn.A": "erp/p/a" }),
      /Did you mean sm-injector.io\/env.<VAR>\?/,
    ],
  ];
  for (const [name, p, message] of cases) {
    test(name, () => {
      const errors = errorsOf(p);
      assert.ok(
        errors.some((e) => message.test(e)),
        `no error matched ${message}:\n${errors.join("\n")}`,
      );
    });
  }
});

describe("accepted input", () => {
  test("the strategy's example annotations compile to the expected entries", () => {
    const r = compileInjectionSpec(
      pod({
        "sm-injector.io/env-from": "erp/production/database",
        "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key",
        "sm-injector.io/secrets": "- secret: erp/production/aws/s3_app_user_credentials\n  prefix: S3_\n",
      }),
      config,
    );
    assert.ok(r.ok);
    assert.deepEqual(r.spec.variables, ["JWT_SECRET_KEY"]);
    assert.deepEqual(r.spec.secretIds, [
      "erp/production/database",
      "erp/staging/jwt/secret_key",
      "erp/production/aws/s3_app_user_credentials",
    ]);
    assert.equal(r.spec.format, "shell");
    assert.equal(r.spec.outputDir, "/run/sm-injector");
    assert.equal(r.spec.initPosition, "last");
    assert.deepEqual(r.warnings, []);
  });

  test("file-name with format files is ignored with a warning", () => {
    const r = compileInjectionSpec(
      pod({ ...A, "sm-injector.io/format": "files", "sm-injector.io/file-name": "x" }),
      config,
    );
    assert.ok(r.ok);
    assert.match(r.warnings.join("\n"), /file-name is ignored with format files/);
  });

  test("the webhook's allowed roots are configurable", () => {
    const narrow = InjectorConfigSchema.parse({
      image: "i",
      defaultRegion: "eu-west-1",
      allowedOutputRoots: ["/secrets"],
    });
    assert.ok(compileInjectionSpec(pod({ ...A, "sm-injector.io/output-dir": "/secrets/app" }), narrow).ok);
    assert.match(
      errorsOf(pod({ ...A, "sm-injector.io/output-dir": "/run/app" }), narrow).join(),
      /outside the allowed roots \(\/secrets\)/,
    );
  });

  test("a writable emptyDir above the output dir is fine (the runtime mounts parents first)", () => {
    const r = compileInjectionSpec(
      pod(A, {
        volumes: [{ name: "run", emptyDir: {} }],
        containers: [{ name: "api", volumeMounts: [{ name: "run", mountPath: "/run" }] }],
      }),
      config,
    );
    assert.ok(r.ok, r.ok ? "" : r.errors.join("\n"));
  });

  test("error messages never echo a whole annotation value back beyond the reference", () => {
    // References are not secret, but the structured form could be large: messages stay one line each.
    const errs = errorsOf(
      pod({ "sm-injector.io/secrets": `- secret: a\n  env: A\n  note: ${"x".repeat(5000)}` }),
    );
    assert.ok(errs.every((e) => e.length < 400 && !e.includes("\n")));
  });
});
