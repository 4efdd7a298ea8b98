// Fetched secrets + the spec's entries → variables, or errors that name the secret and key but
// never a value. Pure: no AWS, no files.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { z } from "zod";
import {
  type ExpandEntry,
  FetchEntrySchema,
  sourceKey,
  type ValueEntry,
} from "../../src/contract/fetch-spec.ts";
import { type FetchedSecret, type FetchOutcome, resolveVariables } from "../../src/fetch/resolve.ts";

type FetchEntryInput = z.input<typeof FetchEntrySchema>;

function entry(e: FetchEntryInput): ValueEntry | ExpandEntry {
  return FetchEntrySchema.parse(e) as ValueEntry | ExpandEntry;
}

function secret(secretId: string, value: string | Buffer, extra: Partial<FetchedSecret> = {}): FetchedSecret {
  return {
    secretId,
    value: typeof value === "string" ? Buffer.from(value, "utf8") : value,
    binary: typeof value !== "string",
    ...extra,
  };
}

/** Resolves `entries` against secrets given as id → value (or a MissingSecret). */
function resolve(entries: FetchEntryInput[], secrets: Record<string, string | Buffer | "MISSING">) {
  const parsed = entries.map(entry);
  const fetched = new Map<string, FetchOutcome>();
  for (const e of parsed) {
    const v = secrets[e.source.secretId];
    if (v === undefined) continue;
    fetched.set(
      sourceKey(e.source),
      v === "MISSING"
        ? { missing: true, reason: "ResourceNotFoundException as role — no secret" }
        : secret(e.source.secretId, v),
    );
  }
  const r = resolveVariables(parsed, fetched);
  return {
    ...r,
    env: Object.fromEntries(r.vars.map((v) => [v.name, v.value.toString("utf8")])),
  };
}

const DB = "erp/production/database";
const S3 = "erp/production/aws/s3_app_user_credentials";
const JWT = "erp/staging/jwt/secret_key";

/** Values with markers that must never show up in a message. */
const MARK = "VALUE-MARKER-7f3a";

function assertNoValue(messages: readonly string[]) {
  for (const m of messages) assert.ok(!m.includes(MARK), `a message leaks a value: ${m}`);
}

describe("whole values", () => {
  test("a plaintext secret into one variable", () => {
    const r = resolve([{ kind: "value", source: { secretId: JWT }, env: "JWT_SECRET_KEY" }], {
      [JWT]: "s3cr3t'$HOME\n",
    });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.env, { JWT_SECRET_KEY: "s3cr3t'$HOME\n" });
  });

  test("a JSON secret without a key is the whole JSON text", () => {
    const json = '{"DATABASE_URL": "postgresql://u:p@h/db"}';
    const r = resolve([{ kind: "value", source: { secretId: DB }, env: "DB_JSON" }], { [DB]: json });
    assert.deepEqual(r.env, { DB_JSON: json });
  });

  test("a binary secret keeps its bytes", () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x01, 0x80, 0x0a]);
    const parsed = [entry({ kind: "value", source: { secretId: "erp/x/cert" }, env: "CERT" })];
    const r = resolveVariables(
      parsed,
      new Map([[sourceKey({ secretId: "erp/x/cert" }), secret("erp/x/cert", bytes)]]),
    );
    assert.deepEqual(r.vars, [{ name: "CERT", value: bytes }]);
  });
});

describe("key selection", () => {
  test("selects one key of a JSON secret", () => {
    const r = resolve(
      [{ kind: "value", source: { secretId: DB }, env: "DATABASE_URL", key: "DATABASE_URL" }],
      { [DB]: JSON.stringify({ DATABASE_URL: "postgresql://u:p@h/db", OTHER: "x" }) },
    );
    assert.deepEqual(r.env, { DATABASE_URL: "postgresql://u:p@h/db" });
  });

  test("non-string JSON values are written as their JSON text", () => {
    const value = {
      port: 5432,
      ssl: true,
      none: null,
      hosts: ["a", "b"],
      opts: { pool: { max: 10 } },
      pi: 3.5,
    };
    const r = resolve(
      Object.keys(value).map((k) => ({
        kind: "value" as const,
        source: { secretId: DB },
        env: k.toUpperCase(),
        key: k,
      })),
      { [DB]: JSON.stringify(value) },
    );
    assert.deepEqual(r.env, {
      PORT: "5432",
      SSL: "true",
      NONE: "null",
      HOSTS: '["a","b"]',
      OPTS: '{"pool":{"max":10}}',
      PI: "3.5",
    });
  });

  test("a missing key names the secret, the key and the keys it has, not the values", () => {
    const r = resolve([{ kind: "value", source: { secretId: DB }, env: "DB_PASSWORD", key: "password" }], {
      [DB]: JSON.stringify({ username: MARK, DATABASE_URL: MARK }),
    });
    assert.deepEqual(r.vars, []);
    assert.equal(r.errors.length, 1);
    assert.match(
      r.errors[0] ?? "",
      /^erp\/production\/database: has no key "password" \(it has 2 keys: "username", "DATABASE_URL"\) \[key-missing\]$/,
    );
    assertNoValue(r.errors);
  });

  test("a non-JSON secret with a key selected is a clear error without the value", () => {
    const r = resolve([{ kind: "value", source: { secretId: JWT }, env: "K", key: "password" }], {
      [JWT]: `{not json ${MARK}`,
    });
    assert.equal(r.errors.length, 1);
    assert.match(
      r.errors[0] ?? "",
      /erp\/staging\/jwt\/secret_key: is not a JSON object, so key "password" cannot be selected/,
    );
    assertNoValue(r.errors);
  });

  test("a JSON array or string is not a JSON object either", () => {
    for (const v of ['["a"]', '"just a string"', "42", "null"]) {
      const r = resolve([{ kind: "expand", source: { secretId: DB } }], { [DB]: v });
      assert.equal(r.errors.length, 1, v);
      assert.match(r.errors[0] ?? "", /is not a JSON object, so its keys cannot be expanded/);
    }
  });

  test("a binary secret is named as such when a key is selected", () => {
    const parsed = [entry({ kind: "value", source: { secretId: "erp/x/bin" }, env: "K", key: "k" })];
    const r = resolveVariables(
      parsed,
      new Map([[sourceKey({ secretId: "erp/x/bin" }), secret("erp/x/bin", Buffer.from([0xff, 0x00]))]]),
    );
    assert.match(r.errors[0] ?? "", /\(it is a binary secret\)/);
  });
});

describe("expansion", () => {
  const creds = JSON.stringify({
    AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
    AWS_SECRET_ACCESS_KEY: "wJalr/K7MDENG+bPxRfi",
  });

  test("every key of a JSON secret, one variable each", () => {
    const r = resolve([{ kind: "expand", source: { secretId: S3 } }], { [S3]: creds });
    assert.deepEqual(r.env, {
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "wJalr/K7MDENG+bPxRfi",
    });
  });

  test("a prefix, and a rename that wins over the prefix", () => {
    const r = resolve(
      [
        {
          kind: "expand",
          source: { secretId: S3 },
          prefix: "S3_",
          rename: { AWS_SECRET_ACCESS_KEY: "S3_SECRET" },
        },
      ],
      { [S3]: creds },
    );
    assert.deepEqual(r.env, { S3_AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", S3_SECRET: "wJalr/K7MDENG+bPxRfi" });
  });

  test("only the selected keys", () => {
    const r = resolve([{ kind: "expand", source: { secretId: S3 }, keys: ["AWS_ACCESS_KEY_ID"] }], {
      [S3]: creds,
    });
    assert.deepEqual(r.env, { AWS_ACCESS_KEY_ID: "AKIAEXAMPLE" });
  });

  test("a selected key that is missing names the secret and the key", () => {
    const r = resolve([{ kind: "expand", source: { secretId: S3 }, keys: ["AWS_SESSION_TOKEN"] }], {
      [S3]: creds,
    });
    assert.deepEqual(r.errors, [
      'erp/production/aws/s3_app_user_credentials: has no key "AWS_SESSION_TOKEN" (it has: "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") [key-missing]',
    ]);
  });

  test("keys that are not variable names are errors naming the secret and the key", () => {
    const r = resolve([{ kind: "expand", source: { secretId: DB } }], {
      [DB]: JSON.stringify({ "db-host": MARK, "2fa": MARK, "new\nline": MARK, ok: "fine" }),
    });
    assert.equal(r.errors.length, 3);
    assert.match(
      r.errors[0] ?? "",
      /^erp\/production\/database key "db-host": "db-host" is not a valid environment variable name/,
    );
    assert.match(r.errors[1] ?? "", /key "2fa"/);
    // A newline in a key stays escaped: one line per problem.
    assert.ok(r.errors.every((e) => !e.includes("\n")));
    assertNoValue(r.errors);
  });

  test("a rename fixes an invalid key", () => {
    const r = resolve([{ kind: "expand", source: { secretId: DB }, rename: { "db-host": "DB_HOST" } }], {
      [DB]: JSON.stringify({ "db-host": "h" }),
    });
    assert.deepEqual(r.env, { DB_HOST: "h" });
  });

  test('a key named "constructor" gets the prefix, not Object.prototype.constructor', () => {
    const r = resolve([{ kind: "expand", source: { secretId: DB }, prefix: "X_" }], {
      [DB]: JSON.stringify({ constructor: "c", toString: "t" }),
    });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.env, { X_constructor: "c", X_toString: "t" });
  });
});

describe("duplicates and NUL bytes", () => {
  test("two entries that set one variable: an error naming both sources", () => {
    const r = resolve(
      [
        { kind: "expand", source: { secretId: DB } },
        { kind: "value", source: { secretId: JWT }, env: "DATABASE_URL" },
      ],
      { [DB]: JSON.stringify({ DATABASE_URL: MARK }), [JWT]: MARK },
    );
    assert.deepEqual(r.errors, [
      'erp/staging/jwt/secret_key: variable DATABASE_URL is also set by erp/production/database key "DATABASE_URL"; give each a distinct name (rename or prefix) [duplicate-variable]',
    ]);
  });

  test("a NUL byte in a value is an error naming the secret and key, not the value", () => {
    const r = resolve([{ kind: "value", source: { secretId: DB }, env: "PW", key: "password" }], {
      [DB]: JSON.stringify({ password: `${MARK}\u0000${MARK}` }),
    });
    assert.equal(r.errors.length, 1);
    assert.match(
      r.errors[0] ?? "",
      /^erp\/production\/database key "password": the value contains a NUL byte/,
    );
    assertNoValue(r.errors);
  });

  test("a NUL byte in a plaintext secret too", () => {
    const r = resolve([{ kind: "value", source: { secretId: JWT }, env: "K" }], { [JWT]: `a\u0000b` });
    assert.match(r.errors[0] ?? "", /^erp\/staging\/jwt\/secret_key: the value contains a NUL byte/);
  });
});

describe("missing secrets and optional entries", () => {
  test("a missing required secret is an error with the reason from the fetch", () => {
    const r = resolve([{ kind: "value", source: { secretId: JWT }, env: "K" }], { [JWT]: "MISSING" });
    assert.deepEqual(r.errors, ["erp/staging/jwt/secret_key: ResourceNotFoundException as role — no secret"]);
  });

  test("a missing optional secret is skipped with a line for the log", () => {
    const r = resolve(
      [
        { kind: "value", source: { secretId: JWT }, env: "K", optional: true },
        { kind: "value", source: { secretId: DB }, env: "D" },
      ],
      { [JWT]: "MISSING", [DB]: "d" },
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.env, { D: "d" });
    assert.equal(r.skipped.length, 1);
    assert.match(r.skipped[0] ?? "", /^erp\/staging\/jwt\/secret_key: .*; optional, skipped$/);
  });

  test("a missing key of an optional entry is skipped; the other keys are written", () => {
    const r = resolve([{ kind: "expand", source: { secretId: DB }, keys: ["A", "B"], optional: true }], {
      [DB]: JSON.stringify({ A: "a" }),
    });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.env, { A: "a" });
    assert.match(r.skipped[0] ?? "", /has no key "B"/);
  });

  test("optional does not excuse a non-JSON secret with a key (a spec error, not a missing secret)", () => {
    const r = resolve([{ kind: "value", source: { secretId: JWT }, env: "K", key: "k", optional: true }], {
      [JWT]: "plain",
    });
    assert.equal(r.errors.length, 1);
  });

  test("versions are told apart: the same secret at two stages resolves each", () => {
    const parsed = [
      entry({ kind: "value", source: { secretId: DB, versionStage: "AWSCURRENT" }, env: "NOW" }),
      entry({ kind: "value", source: { secretId: DB, versionStage: "AWSPREVIOUS" }, env: "BEFORE" }),
    ];
    const fetched = new Map<string, FetchOutcome>([
      [sourceKey({ secretId: DB, versionStage: "AWSCURRENT" }), secret(DB, "new")],
      [sourceKey({ secretId: DB, versionStage: "AWSPREVIOUS" }), secret(DB, "old")],
    ]);
    const r = resolveVariables(parsed, fetched);
    assert.deepEqual(
      r.vars.map((v) => [v.name, v.value.toString()]),
      [
        ["NOW", "new"],
        ["BEFORE", "old"],
      ],
    );
  });
});

describe("no message ever contains a value", () => {
  test("property: random JSON secrets and entries", () => {
    const key = fc.oneof(fc.constantFrom("A", "B", "db-host", "2x", "_ok"), fc.string({ maxLength: 6 }));
    const leaf = fc.oneof(
      fc.string().map((s) => `${MARK}${s}`),
      fc.constant(MARK),
      fc.string().map((s) => `${s}\u0000${MARK}`),
    );
    fc.assert(
      fc.property(
        fc.dictionary(key, fc.oneof(leaf, fc.array(leaf, { maxLength: 2 }), fc.dictionary(key, leaf))),
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant("expand" as const), source: fc.constant({ secretId: DB }) }),
            fc.record({
              kind: fc.constant("value" as const),
              source: fc.constant({ secretId: DB }),
              env: fc.constantFrom("A", "B", "C"),
              key: key,
            }),
          ),
          { minLength: 1, maxLength: 4 },
        ),
        fc.boolean(),
        (obj, entries, asJson) => {
          const value = asJson ? JSON.stringify(obj) : `${MARK} not json`;
          const r = resolve(entries, { [DB]: value });
          assertNoValue([...r.errors, ...r.skipped, ...r.origins.values()]);
          for (const e of r.errors) assert.ok(e.startsWith(DB), e);
        },
      ),
      { numRuns: 300 },
    );
  });
});
