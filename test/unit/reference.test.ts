// The one-line reference syntax, and every refusal message a user can meet in it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseReference, parseSecretId } from "../../src/contract/reference.ts";

const ok = (raw: string, expand = false) => {
  const r = parseReference(raw, { expand });
  assert.ok(r.ok, `expected ${raw} to parse: ${!r.ok && r.error}`);
  return r.value;
};
const err = (raw: string, expand = false) => {
  const r = parseReference(raw, { expand });
  assert.ok(!r.ok, `expected ${raw} to be refused`);
  return r.error;
};

describe("secret references", () => {
  test("a plain name", () => {
    assert.deepEqual(ok("erp/staging/jwt/secret_key"), {
      secretId: "erp/staging/jwt/secret_key",
      name: "erp/staging/jwt/secret_key",
      optional: false,
    });
  });
  test("a JSON key after #, which may itself contain # ? & and spaces", () => {
    assert.equal(ok("erp/production/rds#password").key, "password");
    assert.equal(ok("erp/production/rds#odd key#1?x&y").key, "odd key#1?x&y");
  });
  test("every character Secrets Manager allows in names stays part of the name", () => {
    assert.equal(ok("a/b_c+d=e.f@g-h#k").secretId, "a/b_c+d=e.f@g-h");
  });
  test("version stage, version id and optional as parameters", () => {
    const r = ok("erp/p/db?versionStage=AWSPREVIOUS&optional=true#password");
    assert.equal(r.versionStage, "AWSPREVIOUS");
    assert.equal(r.optional, true);
    assert.equal(r.key, "password");
    assert.equal(
      ok("erp/p/db?versionId=9d3d0c39-2b4b-4a5c-9b7e-0f6a1c2d3e4f").versionId,
      "9d3d0c39-2b4b-4a5c-9b7e-0f6a1c2d3e4f",
    );
  });
  test("an ARN gives its region", () => {
    const r = ok("arn:aws:secretsmanager:eu-west-1:123456789012:secret:erp/production/rds-AbCdEf#password");
    assert.equal(r.arnRegion, "eu-west-1");
    assert.equal(r.name, "erp/production/rds-AbCdEf");
    assert.equal(
      ok("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x").arnRegion,
      "us-gov-west-1",
    );
  });
  test("env-from takes a prefix", () => {
    assert.equal(ok("erp/production/database?prefix=DB_", true).prefix, "DB_");
  });

  const refusals: [string, boolean, RegExp][] = [
    ["", false, /the secret name is empty/],
    ["erp/prod db", false, /contains " ", which Secrets Manager names cannot contain/],
    ["erp/prod:db", false, /contains ":"/],
    ["erp/p/db#", false, /names no JSON key/],
    ["erp/p/db?", false, /"\?" with no parameters/],
    ["erp/p/db?stage=x", false, /unknown parameter "stage" \(known: versionStage, versionId, optional\)/],
    ["erp/p/db?versionStage=A&versionStage=B", false, /given twice/],
    [
      "erp/p/db?versionStage=A&versionId=9d3d0c39-2b4b-4a5c-9b7e-0f6a1c2d3e4f",
      false,
      /either versionStage or versionId/,
    ],
    ["erp/p/db?versionId=42", false, /not a valid version id/],
    ["erp/p/db?versionStage=bad stage", false, /not a valid staging label/],
    ["erp/p/db?optional=yes", false, /optional must be "true" or "false"/],
    ["erp/p/db?prefix=X_", false, /"prefix" only applies to env-from/],
    ["erp/p/db#key", true, /env-from expands every key; use sm-injector.io\/env.<VAR>: erp\/p\/db#key/],
    ["arn:aws:secretsmanager:eu-west-1:123:secret:x", false, /not a valid Secrets Manager ARN/],
    ["x".repeat(513), false, /513 characters long; Secrets Manager allows 512/],
  ];
  for (const [raw, expand, message] of refusals) {
    test(`refuses ${JSON.stringify(raw.slice(0, 40))}${expand ? " (env-from)" : ""}`, () =>
      assert.match(err(raw, expand), message));
  }

  test("secrets an AWS service manages: SERVICE!NAME (RDS's master user passwords), by name or ARN", () => {
    const name = "rds!db-1a96bebc-86c1-4982-9f9f-7d6a651d2464";
    assert.deepEqual(ok(`${name}#password`), { secretId: name, name, key: "password", optional: false });
    const arn = `arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-0a1b-AbCdEf`;
    assert.equal(ok(`${arn}?versionStage=AWSPREVIOUS#username`).name, "rds!cluster-0a1b-AbCdEf");
    // One prefix, lowercase, in front; a `!` anywhere else is refused with the rule.
    for (const bad of ["RDS!db-1", "!db-1", "rds!", "a!b!c", "erp/rds!x", "rds!db 1"])
      assert.match(err(bad), /Secrets Manager name|cannot contain/, bad);
    assert.match(err("erp/rds!x"), /after an AWS service's prefix such as rds!/);
    assert.match(err(`rds!${"a".repeat(509)}`), /513 characters long/);
  });

  test("parseSecretId lists each forbidden character once", () => {
    const r = parseSecretId("a b c!!");
    assert.ok(!r.ok);
    assert.match(r.error, /contains " ", "!"/);
  });
});
