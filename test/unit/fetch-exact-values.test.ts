// Issue 11, case 7: a value selected with `#key` or expanded with env-from is written exactly as it
// appears in the secret: non-string JSON as its own text (never re-serialised), strings decoded, and
// what cannot be written exactly (a lone surrogate, a repeated key) refused naming the secret and
// key, never the value.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { z } from "zod";
import {
  type ExpandEntry,
  FetchEntrySchema,
  sourceKey,
  type ValueEntry,
} from "../../src/contract/fetch-spec.ts";
import { type FetchOutcome, resolveVariables } from "../../src/fetch/resolve.ts";

const DB = "erp/production/database";

function resolve(entries: z.input<typeof FetchEntrySchema>[], text: string, extra: object = {}) {
  const parsed = entries.map((e) => FetchEntrySchema.parse(e) as ValueEntry | ExpandEntry);
  const fetched = new Map<string, FetchOutcome>();
  for (const e of parsed)
    fetched.set(sourceKey(e.source), {
      secretId: DB,
      value: Buffer.from(text, "utf8"),
      binary: false,
      ...extra,
    });
  const r = resolveVariables(parsed, fetched);
  return { ...r, env: Object.fromEntries(r.vars.map((v) => [v.name, v.value.toString("utf8")])) };
}

const expand = [{ kind: "expand" as const, source: { secretId: DB } }];
const pick = (key: string, env = "V") => [{ kind: "value" as const, source: { secretId: DB }, env, key }];

describe("non-string JSON values are written as their exact text in the secret", () => {
  const secret =
    '{"BIG": 12345678901234567890, "HUGE":1e400, "MONEY":1.50, "NEG":-0, "EXP":1E+2,\n "OBJ": {"z":1,"a":[1.0, 2e0]}, "ARR":[ 3.10 ], "T":true, "N":null, "S":"12345678901234567890"}';

  test("env-from: 12345678901234567890, 1e400, 1.50, -0, key order and spacing inside objects", () => {
    assert.deepEqual(resolve(expand, secret).env, {
      BIG: "12345678901234567890",
      HUGE: "1e400",
      MONEY: "1.50",
      NEG: "-0",
      EXP: "1E+2",
      OBJ: '{"z":1,"a":[1.0, 2e0]}',
      ARR: "[ 3.10 ]",
      T: "true",
      N: "null",
      S: "12345678901234567890",
    });
  });

  test("#key selects the same exact text; strings are decoded as before", () => {
    assert.deepEqual(resolve(pick("S"), '{"S":"a\\nb\\u00e9\\ud83d\\ude00\\/"}').env, { V: "a\nbé😀/" });
    assert.deepEqual(resolve(pick("BIG"), secret).env, { V: "12345678901234567890" });
    assert.deepEqual(resolve(pick("HUGE"), secret).env, { V: "1e400" });
    assert.deepEqual(resolve(pick("MONEY"), secret).env, { V: "1.50" });
    assert.deepEqual(resolve(pick("OBJ"), secret).env, { V: '{"z":1,"a":[1.0, 2e0]}' });
  });

  test("non-ASCII text inside a nested object keeps its bytes", () => {
    assert.deepEqual(resolve(pick("O"), '{"O":{"name":"Zoë 😀","esc":"\\u00e9"}}').env, {
      V: '{"name":"Zoë 😀","esc":"\\u00e9"}',
    });
  });
});

describe("what cannot be written exactly is refused, naming the secret and the key", () => {
  test('a lone surrogate in a selected string value ("\\ud800")', () => {
    for (const text of ['{"K":"ok\\ud800SECRETVALUE"}', '{"K":"\\udc00"}', '{"K":"\\ude00\\ud83d"}']) {
      const r = resolve(pick("K"), text);
      assert.deepEqual(r.vars, [], text);
      assert.equal(r.errors.length, 1);
      assert.match(
        r.errors[0] as string,
        /^erp\/production\/database key "K": the value holds a lone surrogate/,
      );
      assert.ok(!(r.errors[0] as string).includes("SECRETVALUE"));
    }
  });

  test("a lone surrogate in an expanded value: that key refused, the message has no value", () => {
    const r = resolve(expand, '{"A":"fine","B":"x\\ud800y"}');
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0] as string, /key "B": the value holds a lone surrogate.*U\+FFFD/);
  });

  test("a lone surrogate in a key", () => {
    const r = resolve(
      [{ kind: "expand", source: { secretId: DB }, rename: { "K\ud800": "K" } }],
      '{"K\\ud800":"v"}',
    );
    assert.deepEqual(r.vars, []);
    assert.match(r.errors[0] as string, /key "K\\ud800": the key holds a lone surrogate/);
  });

  test("a whole SecretString with a lone surrogate (the SDK gives a JS string UTF-8 cannot carry)", () => {
    const r = resolve([{ kind: "value", source: { secretId: DB }, env: "V" }], "x", { loneSurrogate: true });
    assert.deepEqual(r.vars, []);
    assert.match(
      r.errors[0] as string,
      /^erp\/production\/database: the SecretString holds a lone surrogate/,
    );
  });

  test("a repeated key that is used: refused as ambiguous (JSON.parse would silently take the last); unused, it does not matter", () => {
    const text = '{"PASSWORD":"old-SECRETVALUE","USER":"u","PASSWORD":"new-SECRETVALUE"}';
    for (const entries of [pick("PASSWORD"), expand]) {
      const r = resolve(entries, text);
      assert.equal(r.errors.length, 1);
      assert.match(r.errors[0] as string, /key "PASSWORD": the key appears more than once/);
      assert.ok(!(r.errors[0] as string).includes("SECRETVALUE"));
      assert.ok(!r.vars.some((v) => v.name === "PASSWORD"));
    }
    // A repeated key that is not used does not matter.
    assert.deepEqual(resolve(pick("USER"), text).env, { V: "u" });
  });

  test("a binary secret that is not UTF-8 is not read as JSON (no U+FFFD in place of its bytes)", () => {
    const parsed = pick("K").map((e) => FetchEntrySchema.parse(e));
    const value = Buffer.concat([Buffer.from('{"K":"a'), Buffer.from([0xff]), Buffer.from('"}')]);
    const r = resolveVariables(
      parsed,
      new Map([[sourceKey((parsed[0] as ValueEntry).source), { secretId: DB, value, binary: true }]]),
    );
    assert.deepEqual(r.vars, []);
    assert.match(r.errors[0] as string, /is not a JSON object \(it is a binary secret\)/);
  });
});
