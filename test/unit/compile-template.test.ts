// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// Templates at admission: what the compiler makes of them (one template entry, regions resolved per
// placeholder), and every refusal with the words a user will read.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { MAX_FETCH_ENTRIES } from "../../src/contract/fetch-spec.ts";
import { checkSecretPolicy, namespacePolicy } from "../../src/contract/policy.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const RDS = "erp/production/rds";
const URL_TEMPLATE = `postgresql://\${${RDS}#username|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}:\${${RDS}#port}/\${${RDS}#dbname|urlencode}`;

function pod(annotations: Record<string, string>): V1Pod {
  return {
    metadata: { name: "p", labels: { "sm-injector.io/inject": "true" }, annotations },
    spec: { containers: [{ name: "api", image: "api:1", command: ["app"] }] },
  };
}

function compiled(annotations: Record<string, string>) {
  const r = compileInjectionSpec(pod(annotations), config);
  assert.ok(r.ok, r.ok ? "" : r.errors.join("\n"));
  return r.spec;
}

function errorsOf(annotations: Record<string, string>): string[] {
  const r = compileInjectionSpec(pod(annotations), config);
  assert.ok(!r.ok, "expected a refusal");
  return r.errors;
}

const source = { secretId: RDS, region: "eu-west-1" };

describe("a template compiles to one entry", () => {
  test("the RDS DATABASE_URL: literal parts and placeholders, each with its region", () => {
    const spec = compiled({ "sm-injector.io/template.DATABASE_URL": URL_TEMPLATE });
    assert.deepEqual(spec.entries, [
      {
        kind: "template",
        env: "DATABASE_URL",
        parts: [
          "postgresql://",
          { source, key: "username", filter: "urlencode" },
          ":",
          { source, key: "password", filter: "urlencode" },
          "@",
          { source, key: "host" },
          ":",
          { source, key: "port" },
          "/",
          { source, key: "dbname", filter: "urlencode" },
        ],
      },
    ]);
    assert.deepEqual(spec.variables, ["DATABASE_URL"]);
    assert.deepEqual(spec.secretIds, [RDS]);
  });
  test("an ARN keeps its own region; a version stage stays on its placeholder", () => {
    const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:erp/production/rds-AbCdEf";
    const spec = compiled({
      "sm-injector.io/template.DSN": `host=\${${RDS}#host} password=\${${arn}?versionStage=AWSPREVIOUS#password|libpq}`,
    });
    const entry = spec.entries[0];
    assert.ok(entry?.kind === "template");
    assert.deepEqual(entry.parts, [
      "host=",
      { source, key: "host" },
      " password=",
      {
        source: { secretId: arn, versionStage: "AWSPREVIOUS", region: "us-east-1" },
        key: "password",
        filter: "libpq",
      },
    ]);
  });
  test("the structured form: {env, template, region}", () => {
    const spec = compiled({
      "sm-injector.io/secrets": `- env: DATABASE_URL\n  region: eu-central-1\n  template: "postgresql://\${${RDS}#host}/x"\n- secret: erp/staging/jwt/secret_key\n  env: JWT\n`,
    });
    assert.deepEqual(spec.entries[0], {
      kind: "value",
      source: { secretId: "erp/staging/jwt/secret_key", region: "eu-west-1" },
      env: "JWT",
      optional: false,
    });
    assert.deepEqual(spec.entries[1], {
      kind: "template",
      env: "DATABASE_URL",
      parts: ["postgresql://", { source: { secretId: RDS, region: "eu-central-1" }, key: "host" }, "/x"],
    });
  });
});

describe("refusals", () => {
  test("syntax problems name the annotation and the character", () => {
    assert.deepEqual(
      errorsOf({ "sm-injector.io/template.DATABASE_URL": `postgresql://\${${RDS}#host:$PORT` }),
      [`sm-injector.io/template.DATABASE_URL: at character 14: "\${" has no closing "}"`],
    );
    assert.match(
      errorsOf({ "sm-injector.io/secrets": `- env: A\n  template: "x\${${RDS}#host|base64}"` })[0] ?? "",
      /^sm-injector\.io\/secrets\[0\]\.template: at character 2: .*"base64" is not a filter \(known: urlencode, libpq, json\)/,
    );
  });
  test("a bad variable name, an optional reference, a constant", () => {
    assert.deepEqual(errorsOf({ "sm-injector.io/template.database-url": `\${${RDS}#host}` }), [
      'sm-injector.io/template.database-url: "database-url" is not a valid environment variable name; use letters, digits and _, not starting with a digit (e.g. sm-injector.io/template.DB_PASSWORD)',
    ]);
    assert.match(
      errorsOf({ "sm-injector.io/template.A": `\${${RDS}?optional=true#host}` })[0] ?? "",
      /optional references are not allowed in a template/,
    );
    assert.match(
      errorsOf({ "sm-injector.io/template.A": "postgresql://localhost/erp" })[0] ?? "",
      /has no \$\{…\} placeholder/,
    );
  });
  test("structured: template with the fields that belong inside it, or without env", () => {
    assert.deepEqual(
      errorsOf({ "sm-injector.io/secrets": `- {secret: ${RDS}, key: host, template: "\${${RDS}#host}"}` }),
      [
        "sm-injector.io/secrets[0]: template cannot be combined with secret, key; each placeholder names its own secret, key and version (${name#key?versionStage=S}), and a template is never optional",
        "sm-injector.io/secrets[0]: template needs env, the variable to put it in",
      ],
    );
    assert.deepEqual(errorsOf({ "sm-injector.io/secrets": "- env: A" }), [
      "sm-injector.io/secrets[0].secret: secret (a name or ARN) is required",
    ]);
  });
  test("a variable set by a template and by env.<VAR>", () => {
    assert.deepEqual(
      errorsOf({
        "sm-injector.io/env.DATABASE_URL": `${RDS}#url`,
        "sm-injector.io/template.DATABASE_URL": `\${${RDS}#host}`,
      }),
      [
        "sm-injector.io/template.DATABASE_URL: variable DATABASE_URL is already set by sm-injector.io/env.DATABASE_URL; give each a distinct name",
      ],
    );
  });
  test("no region for a name: one problem per secret, however often the template names it", () => {
    const noRegion = InjectorConfigSchema.parse({ image: "img:1" });
    const r = compileInjectionSpec(pod({ "sm-injector.io/template.DATABASE_URL": URL_TEMPLATE }), noRegion);
    assert.ok(!r.ok);
    assert.deepEqual(r.errors, [
      `sm-injector.io/template.DATABASE_URL: no AWS region for "${RDS}"; set sm-injector.io/region, AWS_REGION in the container's env, use an ARN, or configure the webhook's default region`,
    ]);
  });
});

describe("limits, measured before parsing", () => {
  test("a template over 4 KiB or 32 placeholders is refused unparsed", () => {
    assert.deepEqual(errorsOf({ "sm-injector.io/template.A": `\${${RDS}#host}${"$".repeat(5000)}` }), [
      "sm-injector.io/template.A: the template is 5,026 bytes; the limit is 4,096",
    ]);
    assert.deepEqual(errorsOf({ "sm-injector.io/template.A": `\${${RDS}#host}`.repeat(33) }), [
      "sm-injector.io/template.A: the template has 33 placeholders; the limit is 32: compose fewer values in one variable",
    ]);
  });
  test("placeholders count toward the init container's entry limit, with the other entries", () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 16; i++) annotations[`sm-injector.io/template.T${i}`] = `\${s${i}}`.repeat(30);
    annotations["sm-injector.io/secrets"] = Array.from(
      { length: 21 },
      (_, i) => `- {secret: x${i}, env: X${i}}`,
    ).join("\n");
    const errors = errorsOf(annotations);
    assert.deepEqual(errors, [
      `the pod's entries and template placeholders name 501 secret references; the init container takes at most ${MAX_FETCH_ENTRIES}: compose fewer values, or combine them into JSON secrets`,
    ]);
  });
});

describe("the namespace's policy applies to every placeholder", () => {
  test("a template naming a secret the namespace does not allow is refused, as env.<VAR> would be", () => {
    const spec = compiled({
      "sm-injector.io/template.DATABASE_URL": `postgresql://\${erp/production/rds#username}@\${erp/staging/rds#host}/erp`,
    });
    const policy = namespacePolicy({
      "sm-injector.io/allowed-secrets": "erp/production/*",
      "sm-injector.io/allowed-regions": "us-east-1",
    });
    const problems = checkSecretPolicy(spec, policy, "erp");
    assert.equal(problems.length, 3);
    assert.match(problems[0] ?? "", /^secret "erp\/staging\/rds" is not allowed in namespace erp/);
    assert.match(problems[1] ?? "", /^secret "erp\/production\/rds" would be read in region eu-west-1/);
    assert.match(problems[2] ?? "", /^secret "erp\/staging\/rds" would be read in region eu-west-1/);
  });
});
