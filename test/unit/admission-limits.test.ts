// Bounded admission cost: every limit on a pod's annotations, checked before anything is parsed,
// refused with one message that names the limit; messages stay short whatever the pod says.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import {
  MAX_ANNOTATION_COUNT,
  MAX_ANNOTATION_KEY_BYTES,
  MAX_ANNOTATION_VALUE_BYTES,
  MAX_ANNOTATIONS_TOTAL_BYTES,
  MAX_JSON_KEY_BYTES,
  MAX_KEYS_PER_ENTRY,
  MAX_REPORTED_PROBLEMS,
  MAX_YAML_BYTES,
  ProblemList,
  quote,
} from "../../src/contract/annotations.ts";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { FetchSpecSchema, MAX_FETCH_ENTRIES, MAX_FETCH_SPEC_BYTES } from "../../src/contract/fetch-spec.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });

function pod(annotations: Record<string, string>): V1Pod {
  return {
    metadata: { name: "p", labels: { "sm-injector.io/inject": "true" }, annotations },
    spec: { containers: [{ name: "api", image: "api:1", command: ["app"] }] },
  };
}

function refusal(annotations: Record<string, string>): { errors: string[]; text: string } {
  const r = compileInjectionSpec(pod(annotations), config);
  assert.ok(!r.ok, "expected a refusal");
  return { errors: r.errors, text: r.errors.join("\n") };
}

/** A denial a user can read: a few KiB at most, one line per problem. */
function assertBounded(errors: string[]) {
  const bytes = Buffer.byteLength(errors.join("\n"));
  assert.ok(bytes < 4096, `the problems are ${bytes} bytes`);
  assert.ok(errors.length <= MAX_REPORTED_PROBLEMS + 1, `${errors.length} problems listed`);
  assert.ok(
    errors.every((e) => !e.includes("\n")),
    "a problem spans several lines",
  );
}

describe("limits checked before parsing", () => {
  test("a 1.4 MB structured annotation (700,000 keys) is refused naming the limit and its value", () => {
    const { errors, text } = refusal({
      "sm-injector.io/secrets": `- secret: a\n  keys: [${Array(700_000).fill("x").join(",")}]`,
    });
    assert.match(
      text,
      /^sm-injector\.io\/secrets is 1,400,021 bytes; the limit is 64 KiB per sm-injector\.io\/ annotation/m,
    );
    assertBounded(errors);
  });

  test("an annotation value one byte over the limit is refused; at the limit it is read", () => {
    const at = `erp/p/a#${"k".repeat(MAX_ANNOTATION_VALUE_BYTES - "erp/p/a#".length)}`;
    assert.doesNotMatch(refusal({ "sm-injector.io/env.A": at }).text, /the limit is 64 KiB/);
    assert.match(refusal({ "sm-injector.io/env.A": `${at}k` }).text, /is 65,537 bytes; the limit is 64 KiB/);
  });

  test("six unknown 200 KB keys: each named once, cut short, no 'did you mean' worked out", () => {
    const annotations: Record<string, string> = { "sm-injector.io/env.A": "erp/p/a" };
    for (let i = 0; i < 6; i++) annotations[`sm-injector.io/${i}${"q".repeat(200_000)}`] = "1";
    const { errors, text } = refusal(annotations);
    assert.equal(
      (text.match(/is 200,016 bytes; the limit is 78 \(Kubernetes allows 63 characters/g) ?? []).length,
      6,
    );
    assert.match(text, /\(200,016 characters\)/);
    assertBounded(errors);
  });

  test(`an annotation key over ${MAX_ANNOTATION_KEY_BYTES} bytes`, () => {
    const key = `sm-injector.io/env.${"A".repeat(MAX_ANNOTATION_KEY_BYTES)}`;
    assert.match(refusal({ [key]: "erp/p/a" }).text, /is 97 bytes; the limit is 78/);
  });

  test("40,000 bad annotations: one problem naming the count limit", () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 40_000; i++) annotations[`sm-injector.io/env.${i}bad`] = "erp/p/a";
    const { errors, text } = refusal(annotations);
    assert.match(
      text,
      new RegExp(`the pod has 40,000 sm-injector.io/ annotations; the limit is ${MAX_ANNOTATION_COUNT}`),
    );
    assertBounded(errors);
  });

  test("the total of all sm-injector annotations", () => {
    const annotations: Record<string, string> = {};
    const value = `erp/p/a#${"k".repeat(1000)}`;
    for (let i = 0; i < 140; i++) annotations[`sm-injector.io/env.V${i}`] = value;
    assert.match(
      refusal(annotations).text,
      new RegExp(
        `annotations are 14\\d,\\d{3} bytes together; the limit is ${MAX_ANNOTATIONS_TOTAL_BYTES / 1024} KiB`,
      ),
    );
  });

  test("other annotations do not count", () => {
    const r = compileInjectionSpec(
      pod({ "sm-injector.io/env.A": "erp/p/a", "example.com/big": "x".repeat(1_000_000) }),
      config,
    );
    assert.ok(r.ok);
  });
});

describe("limits of the structured form", () => {
  test(`more than ${MAX_FETCH_ENTRIES} entries (the init container's limit)`, () => {
    const text = "- secret: erp/p/a\n  env: A\n".repeat(MAX_FETCH_ENTRIES + 1);
    assert.match(
      refusal({ "sm-injector.io/secrets": text }).text,
      /lists 501 entries; the init container takes at most 500/,
    );
  });

  test(`more than ${MAX_KEYS_PER_ENTRY} keys in one entry`, () => {
    const keys = Array.from({ length: MAX_KEYS_PER_ENTRY + 1 }, (_, i) => `k${i}`).join(",");
    assert.match(
      refusal({ "sm-injector.io/secrets": `- {secret: a, keys: [${keys}]}` }).text,
      /sm-injector\.io\/secrets\[0\]\.keys: lists 257 keys; the limit is 256 per entry/,
    );
  });

  test(`more than ${MAX_KEYS_PER_ENTRY} renames in one entry`, () => {
    const rename = Array.from({ length: MAX_KEYS_PER_ENTRY + 1 }, (_, i) => `k${i}: V${i}`).join(", ");
    assert.match(
      refusal({ "sm-injector.io/secrets": `- {secret: a, rename: {${rename}}}` }).text,
      /\[0\]\.rename: renames 257 keys; the limit is 256 per entry/,
    );
  });

  test("a string field over its limit", () => {
    assert.match(
      refusal({
        "sm-injector.io/secrets": `- {secret: a, env: A, key: ${"k".repeat(MAX_JSON_KEY_BYTES + 1)}}`,
      }).text,
      /\[0\]\.key: is 1,025 bytes; the limit is 1,024/,
    );
    assert.match(
      refusal({ "sm-injector.io/secrets": `- {secret: a, env: ${"V".repeat(300)}}` }).text,
      /\[0\]\.env: is 300 bytes; the limit is 256/,
    );
  });

  test(`YAML beyond the plain form is parsed only up to ${MAX_YAML_BYTES / 1024} KiB`, () => {
    const flow = `- {secret: a, keys: [${Array(5000).fill("x").join(", ")}]}`;
    assert.match(
      refusal({ "sm-injector.io/secrets": flow }).text,
      /sm-injector\.io\/secrets is 15,0\d\d bytes; the limit is 8 KiB unless it is in the plain form/,
    );
  });

  test("deep block nesting is refused before the YAML parser sees it (it overflowed the stack)", () => {
    assert.match(
      refusal({ "sm-injector.io/secrets": `${"- ".repeat(4000)}x` }).text,
      /indents or nests a line more than 64 characters deep/,
    );
  });

  test("the plain form is read up to the value limit", () => {
    const text = Array.from(
      { length: 400 },
      (_, i) => `- secret: erp/production/s${i}\n  env: VARIABLE_${i}\n`,
    ).join("");
    assert.ok(text.length > MAX_YAML_BYTES);
    const r = compileInjectionSpec(pod({ "sm-injector.io/secrets": text }), { ...config, maxSecrets: 500 });
    assert.ok(r.ok, r.ok ? "" : r.errors.join("\n"));
    assert.equal(r.spec.entries.length, 400);
  });

  test("deep nesting is refused before the YAML parser sees it", () => {
    assert.match(
      refusal({ "sm-injector.io/secrets": `${"[".repeat(2000)}${"]".repeat(2000)}` }).text,
      /nests \[ and \{ more than 8 deep/,
    );
  });
});

describe("problems and quotes stay short", () => {
  test("a 195 KB value with 65,000 bad keys: 20 problems, then how many more", () => {
    const keys = Array(2000).fill("a-").join(",");
    const { errors } = refusal({
      "sm-injector.io/secrets": `- secret: a\n  keys: [${keys}]`,
    });
    assertBounded(errors);
  });

  test("many problems: the first 20, then 'and N more problems'", () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 100; i++) annotations[`sm-injector.io/env.${i}bad`] = "erp/p/a";
    const r = compileInjectionSpec(pod(annotations), config);
    assert.ok(!r.ok);
    assert.equal(r.errors.length, MAX_REPORTED_PROBLEMS + 1);
    assert.equal(r.errors.at(-1), "and 80 more problems");
    assert.equal(r.problemCount, 100);
  });

  test("user text is quoted escaped and cut: no newline, quote or control character gets through", () => {
    const { errors } = refusal({ "sm-injector.io/format": `evil\n"injected"\u0000${"x".repeat(5000)}` });
    assert.match(
      errors[0] as string,
      /^sm-injector\.io\/format: "evil\\n\\"injected\\"\\u0000x+"… \(5,016 characters\) is not a format/,
    );
    assertBounded(errors);
  });

  test("quote keeps surrogate pairs whole and escapes lone ones", () => {
    assert.equal(quote(`${"a".repeat(99)}😀tail`), `"${"a".repeat(99)}"… (105 characters)`);
    assert.equal(quote("\ud800"), '"\\ud800"');
  });

  test("a list keeps the first problems, each cut to its limit", () => {
    const list = new ProblemList();
    list.push("x".repeat(5000));
    assert.equal(list.list()[0]?.length, 1024);
  });

  test("'did you mean' for short keys only", () => {
    assert.match(
      refusal({ "sm-injector.io/formt": "shell", "sm-injector.io/env.A": "erp/p/a" }).text,
      /Did you mean sm-injector\.io\/format\?/,
    );
    const long = `formt${"x".repeat(40)}`;
    assert.match(
      refusal({ [`sm-injector.io/${long}`]: "1", "sm-injector.io/env.A": "erp/p/a" }).text,
      /unknown sm-injector annotation\. Known keys:/,
    );
  });

  test("a one-line #key over 1 KiB", () => {
    assert.match(
      refusal({ "sm-injector.io/env.A": `erp/p/a#${"k".repeat(MAX_JSON_KEY_BYTES + 1)}` }).text,
      /the JSON key after "#" is 1,025 bytes; the limit is 1,024/,
    );
  });

  test("a prefix over 256 bytes", () => {
    assert.match(
      refusal({ "sm-injector.io/env-from": `erp/p/a?prefix=${"P".repeat(300)}` }).text,
      /prefix is 300 bytes; the limit is 256/,
    );
  });
});

describe("one limit for both sides", () => {
  test(`the init container takes ${MAX_FETCH_ENTRIES} entries and admission refuses more`, () => {
    const entry = { kind: "value", source: { secretId: "a" }, env: "A" };
    const spec = (n: number) => ({
      version: 1,
      format: "shell",
      outputDir: "/run/x",
      fileName: "env",
      fileMode: 0o400,
      timeoutSeconds: 5,
      entries: Array(n).fill(entry),
    });
    assert.ok(FetchSpecSchema.safeParse(spec(MAX_FETCH_ENTRIES)).success);
    assert.ok(!FetchSpecSchema.safeParse(spec(MAX_FETCH_ENTRIES + 1)).success);
  });

  test("one-line annotations and structured entries together over the entry limit", () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 300; i++) annotations[`sm-injector.io/env.V${i}`] = `erp/p/a#k${i}`;
    annotations["sm-injector.io/secrets"] = Array.from(
      { length: 250 },
      (_, i) => `- secret: erp/p/a\n  key: k${i}\n  env: S${i}\n`,
    ).join("");
    assert.match(
      refusal(annotations).text,
      /the pod asks for 550 entries .*; the init container takes at most 500/,
    );
  });

  test("the spec-size limit leaves room for the variable's name under Linux's MAX_ARG_STRLEN", () => {
    assert.equal(MAX_FETCH_SPEC_BYTES + "SM_INJECTOR_SPEC=".length + 1, 131_072);
  });
});
