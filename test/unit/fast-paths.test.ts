// The admission path's fast paths against the general code they stand in for: each may only answer
// where it agrees exactly with it (the YAML parser, the zod schemas, fast-json-patch, structuredClone).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import fastJsonPatch from "fast-json-patch";
import { parse as parseYaml } from "yaml";
import { isPodShape, PodShape } from "../../src/admission/review.ts";
import { parseSimpleYamlList } from "../../src/contract/structured.ts";
import { clonePlain, withFields } from "../../src/mutate/clone.ts";
import { patchJson } from "../../src/mutate/patch.ts";

const RUNS = 2000;

// --- the structured annotation's YAML ---------------------------------------------------------

// Mostly the simple form, with every kind of near miss mixed in.
const usually = <T>(common: fc.Arbitrary<T>, rare: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 12, arbitrary: common }, { weight: 1, arbitrary: rare });
const scalarKey = fc.constantFrom(
  "secret",
  "env",
  "key",
  "prefix",
  "versionStage",
  "versionId",
  "region",
  "optional",
);
const yamlLine = fc
  .record({
    lead: usually(
      fc.constantFrom("- ", "  "),
      fc.constantFrom(" ", "   ", "-  ", "\t", "-", "", "? ", "- - "),
    ),
    key: usually(
      scalarKey,
      fc.constantFrom("keys", "rename", "Secret", "bogus", "true", "null", "<<", "a b", "1"),
    ),
    sep: usually(fc.constant(": "), fc.constantFrom(":  ", ":", " : ", ":\t", ": # c")),
    value: fc.oneof(
      { weight: 6, arbitrary: fc.stringMatching(/^[A-Za-z_/][A-Za-z0-9_/.@+=:-]{0,15}$/) },
      fc.constantFrom(
        "erp/production/database",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:erp/x-AbCdEf",
        "arn::x",
        "S3_",
        "true",
        "True",
        "TRUE",
        "tRue",
        "false",
        "False",
        "fALSE",
        "yes",
        "no",
        "on",
        "null",
        "Null",
        "NULL",
        "nULL",
        "~",
        "",
        "1",
        "-1",
        "0x1F",
        "0o17",
        "1e3",
        ".inf",
        ".nan",
        "'q'",
        '"q"',
        "[a, b]",
        "{a: b}",
        "a #c",
        "a#c",
        "a: b",
        "a:b",
        "x:",
        "x::y",
        "&a x",
        "*a",
        "!tag x",
        "@x",
        "`x",
        "%x",
        "|",
        ">",
        "?x",
        "-x",
        "/path/x",
        "_x",
        "a=b",
        "x ",
        " x",
      ),
      fc.string({ maxLength: 12 }),
    ),
  })
  .map(({ lead, key, sep, value }) => `${lead}${key}${sep}${value}`);

const yamlText = fc
  .record({
    lines: fc.array(usually(yamlLine, fc.constantFrom("", "# c", "---", "...", "%YAML 1.2", "-")), {
      maxLength: 8,
    }),
    eol: usually(fc.constant("\n"), fc.constant("\r\n")),
    trailing: usually(fc.constantFrom("", "\n"), fc.constantFrom("\n\n", " ", "\r\n")),
  })
  .map(({ lines, eol, trailing }) => lines.join(eol) + trailing);

test("simple YAML lists: where the fast reader answers, it is exactly what the YAML parser returns", () => {
  let answered = 0;
  fc.assert(
    fc.property(yamlText, (text) => {
      const fast = parseSimpleYamlList(text);
      if (fast === undefined) return;
      answered++;
      assert.deepStrictEqual(fast, parseYaml(text, { maxAliasCount: 0, prettyErrors: false }));
    }),
    { numRuns: RUNS * 3 },
  );
  assert.ok(answered > RUNS / 10, `the fast reader answered only ${answered} times`);
});

test("simple YAML lists: the documented form takes the fast path", () => {
  const text =
    "- secret: erp/production/aws/s3_app_user_credentials\n  prefix: S3_\n- secret: erp/x\n  env: X\n  optional: true\n";
  assert.deepStrictEqual(parseSimpleYamlList(text), [
    { secret: "erp/production/aws/s3_app_user_credentials", prefix: "S3_" },
    { secret: "erp/x", env: "X", optional: true },
  ]);
  for (const other of ["- secret: 'quoted'\n", "- secret: a\n  keys: [x]\n", "- secret: a # note\n", "[]"])
    assert.equal(parseSimpleYamlList(other), undefined, other);
});

// --- the pod's shape ------------------------------------------------------

const odd = fc.constantFrom(undefined, null, "", "x", 0, true, [], {}, ["x"]);
const maybe = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 6, arbitrary: valid }, odd);
const named = fc.oneof(
  { weight: 5, arbitrary: fc.record({ name: fc.constant("a"), image: fc.constant("i") }) },
  odd,
);
const pod = fc
  .oneof(
    {
      weight: 8,
      arbitrary: fc.record(
        {
          metadata: maybe(
            fc.record(
              {
                name: maybe(fc.constant("p")),
                generateName: maybe(fc.constant("p-")),
                namespace: maybe(fc.constant("ns")),
                labels: maybe(fc.dictionary(fc.constantFrom("a", "b"), maybe(fc.constant("v")))),
                annotations: maybe(fc.dictionary(fc.constantFrom("a", "b"), maybe(fc.constant("v")))),
                uid: odd,
              },
              { requiredKeys: [] },
            ),
          ),
          spec: maybe(
            fc.record(
              {
                serviceAccountName: maybe(fc.constant("sa")),
                containers: maybe(fc.array(named, { maxLength: 3 })),
                initContainers: maybe(fc.array(named, { maxLength: 2 })),
                volumes: maybe(fc.array(named, { maxLength: 2 })),
                nodeName: odd,
              },
              { requiredKeys: [] },
            ),
          ),
        },
        { requiredKeys: [] },
      ),
    },
    odd,
  )
  .map((p) => (p === undefined ? p : (JSON.parse(JSON.stringify(p)) as unknown)));

test("pod shape: the fast check accepts only what the schema accepts", () => {
  let accepted = 0;
  fc.assert(
    fc.property(pod, (p) => {
      const zod = PodShape.safeParse(p).success;
      if (isPodShape(p)) {
        accepted++;
        assert.ok(zod, `fast check accepted what the schema refuses: ${JSON.stringify(p)}`);
      }
    }),
    { numRuns: RUNS },
  );
  assert.ok(accepted > 0, "the fast check never accepted");
});

// --- the patch and copies ---------------------------------------------------------------------

/** A copy of `doc` with random edits; untouched parts stay shared, as in mutatePod's result. */
function edited(doc: unknown, seed: number): unknown {
  let s = seed >>> 0 || 1;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
  const fresh = () => [1, "x", null, true, { a: [1] }, [{}], undefined][rnd(7)];
  const walk = (v: unknown): unknown => {
    if (typeof v !== "object" || v === null) return rnd(4) === 0 ? fresh() : v;
    const r = rnd(8);
    if (r === 0) return v; // shared
    if (r === 1) return fresh();
    if (Array.isArray(v)) {
      const out = v.map((x) => (rnd(2) ? walk(x) : x));
      if (rnd(3) === 0) out.push(fresh());
      if (rnd(4) === 0) out.splice(rnd(out.length + 1), 1);
      if (rnd(5) === 0) out.unshift(fresh());
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (rnd(6) === 0) continue;
      out[k] = rnd(2) ? walk(x) : x;
    }
    if (rnd(3) === 0) out[["n", "a/b", "t~x", "0"][rnd(4)] as string] = fresh();
    return out;
  };
  return walk(doc);
}

test("patchJson: the same JSON text as fast-json-patch's compare", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 4 })),
        fc.array(fc.jsonValue({ maxDepth: 4 })),
      ),
      fc.integer(),
      fc.jsonValue({ maxDepth: 3 }),
      (before, seed, other) => {
        const after = edited(before, seed);
        if (typeof after === "object" && after !== null) {
          assert.equal(patchJson(before, after), JSON.stringify(fastJsonPatch.compare(before, after)));
        }
        if (typeof other === "object" && other !== null) {
          assert.equal(patchJson(before, other), JSON.stringify(fastJsonPatch.compare(before, other)));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test("clonePlain: equal to structuredClone, sharing nothing", () => {
  const weird = fc.constantFrom(
    new Date(0),
    new Map([[1, 2]]),
    { a: undefined },
    new Array(3).fill(1, 0, 1),
    Object.assign([1], { extra: true }),
    Object.create(null),
    JSON.parse('{"__proto__": {"x": 1}}'),
  );
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue({ maxDepth: 5 }), weird, fc.array(weird)), (v) => {
      const c = clonePlain(v);
      assert.deepStrictEqual(c, structuredClone(v));
      if (typeof v === "object" && v !== null) assert.notEqual(c, v);
    }),
    { numRuns: RUNS },
  );
});

test("withFields: the spread's keys, order and values", () => {
  const obj = fc.oneof(
    fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 }),
    fc.constant(JSON.parse('{"__proto__": 1, "a": 2}') as Record<string, unknown>),
  );
  fc.assert(
    fc.property(obj, obj, (o, f) => {
      const spread = { ...o, ...f };
      const built = withFields(o, f);
      assert.deepStrictEqual(built, spread);
      assert.deepStrictEqual(Object.keys(built), Object.keys(spread));
      assert.equal(Object.getPrototypeOf(built), Object.prototype);
    }),
    { numRuns: RUNS },
  );
});
