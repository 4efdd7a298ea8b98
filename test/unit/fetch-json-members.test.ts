// The scanner that finds each top-level member's value text in a JSON object secret, held to
// JSON.parse on generated JSON (odd whitespace, every number form, escapes, nesting, repeated keys).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { parseJsonObjectMembers } from "../../src/fetch/json-members.ts";

const ws = fc.constantFrom("", "", " ", "\n", "\t", "\r\n", "  \n\t ");

const numberText = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.constantFrom("12345678901234567890", "1e400", "-1e-400", "1.50", "-0", "0.0", "1E+2", "2e-7", "-0.000"),
);

/** A JSON string token, with escapes of every kind (including \u escapes and lone surrogates). */
const stringText = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 4 }).map((s) => JSON.stringify(s).slice(1, -1)),
      fc.constantFrom(
        '\\"',
        "\\\\",
        "\\/",
        "\\n",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "é",
        "😀",
        "}",
        "]",
        ",",
        ":",
      ),
    ),
    { maxLength: 4 },
  )
  .map((parts) => `"${parts.join("")}"`);

const keyText = fc.oneof(fc.constantFrom('"a"', '"b"', '"__proto__"', '"1"', '"a\\u0062"'), stringText);

const valueText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    numberText,
    stringText,
    fc.constantFrom("true", "false", "null"),
    fc
      .array(fc.tuple(ws, tie("value"), ws), { maxLength: 3 })
      .map((items) => `[${items.map(([a, v, b]) => a + v + b).join(",")}]`),
    fc
      .array(fc.tuple(ws, keyText, ws, ws, tie("value"), ws), { maxLength: 3 })
      .map((ms) => `{${ms.map(([a, k, b, c, v, d]) => `${a}${k}${b}:${c}${v}${d}`).join(",")}}`),
  ),
})).value;

const objectText = fc
  .array(fc.tuple(ws, keyText, ws, ws, valueText, ws), { maxLength: 6 })
  .chain((ms) =>
    fc
      .tuple(ws, ws, ws)
      .map(
        ([a, b, c]) =>
          `${a}{${b}${ms.map(([d, k, e, f, v, g]) => `${d}${k}${e}:${f}${v}${g}`).join(",")}${c}}${a}`,
      ),
  );

describe("parseJsonObjectMembers agrees with JSON.parse", () => {
  test("property: same keys, same values; every non-string value is exactly its own text", () => {
    fc.assert(
      fc.property(objectText, (text) => {
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const r = parseJsonObjectMembers(text);
        assert.ok(r, text);
        assert.deepEqual(new Set(r.members.keys()), new Set(Object.keys(parsed)));
        for (const [key, m] of r.members) {
          if (m.kind === "string") {
            assert.equal(m.value, parsed[key]);
          } else {
            assert.ok(text.includes(m.text), m.text);
            assert.equal(m.text.trim(), m.text);
            assert.deepEqual(JSON.parse(m.text), parsed[key]);
          }
        }
        // A repeated key is reported, and holds the last value, as JSON.parse.
        const count = new Map<string, number>();
        for (const k of topLevelKeys(text)) count.set(k, (count.get(k) ?? 0) + 1);
        assert.deepEqual(new Set(r.duplicates), new Set([...count].filter(([, n]) => n > 1).map(([k]) => k)));
      }),
      { numRuns: 2000 },
    );
  });

  test("not an object, or not JSON: undefined", () => {
    for (const text of ["[1]", '"s"', "1", "null", "{", '{"a":1', '{"a":1}x', "", "{'a':1}"])
      assert.equal(parseJsonObjectMembers(text), undefined, text);
  });

  test("the issue's values keep their exact text", () => {
    const r = parseJsonObjectMembers(
      '{"big":12345678901234567890,"huge":1e400,"money":1.50,"obj":{"z":1,"a":[1.0, 2]} ,"s":"x\\ny"}',
    );
    assert.deepEqual(Object.fromEntries(r?.members ?? []), {
      big: { kind: "raw", text: "12345678901234567890" },
      huge: { kind: "raw", text: "1e400" },
      money: { kind: "raw", text: "1.50" },
      obj: { kind: "raw", text: '{"z":1,"a":[1.0, 2]}' },
      s: { kind: "string", value: "x\ny" },
    });
  });

  test("a repeated key: JSON.parse's value (the last) and its first position", () => {
    const r = parseJsonObjectMembers('{"a":1,"b":2,"a":3}');
    assert.deepEqual(
      [...(r?.members ?? [])],
      [
        ["a", { kind: "raw", text: "3" }],
        ["b", { kind: "raw", text: "2" }],
      ],
    );
    assert.deepEqual([...(r?.duplicates ?? [])], ["a"]);
  });
});

/** The decoded top-level keys of a JSON object text, in order, with repeats (an independent reading). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = depth === 1;
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return keys;
}
