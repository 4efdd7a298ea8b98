// The annotation table is the contract: every key the compiler and the rotation controller accept is
// found through it, and each entry's example is a key the table itself recognises.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parse as parseYaml } from "yaml";
import {
  ANNOTATIONS,
  type AnnotationName,
  annotationOf,
  documentedKey,
  FIXED_KEYS,
  KNOWN_KEYS,
  MAX_ANNOTATION_COUNT,
  PREFIX,
  RESTART_ON_ROTATION_ANNOTATION,
} from "../../src/contract/annotations.ts";
import { MAX_FETCH_ENTRIES } from "../../src/contract/fetch-spec.ts";

describe("the annotation table", () => {
  for (const [name, entry] of Object.entries(ANNOTATIONS) as [
    AnnotationName,
    (typeof ANNOTATIONS)[AnnotationName],
  ][]) {
    test(`${documentedKey(entry)}: its example is the annotation it documents`, () => {
      const example = parseYaml(entry.example) as Record<string, unknown>;
      const [key = ""] = Object.keys(example);
      assert.ok(key.startsWith(PREFIX), `example of ${name} is not under ${PREFIX}`);
      assert.equal(annotationOf(key.slice(PREFIX.length))?.name, name);
      assert.equal(typeof example[key], "string", "annotation values are strings: quote them in YAML");
    });
  }

  test("keys are matched whole, families by their stem", () => {
    assert.deepEqual(annotationOf("env.DB_PASSWORD"), { name: "env", suffix: "DB_PASSWORD" });
    assert.deepEqual(annotationOf("env-from"), { name: "envFrom", suffix: "" });
    assert.deepEqual(annotationOf("env-from.db"), { name: "envFrom", suffix: "db" });
    assert.deepEqual(annotationOf("output-dir"), { name: "outputDir", suffix: "" });
    for (const unknown of ["env", "env-fromx", "output-dir.x", "Format", "status", "outputDir", ""])
      assert.equal(annotationOf(unknown), undefined, unknown);
  });

  test("the derived lookups name every fixed annotation and nothing else", () => {
    const fixed = Object.values(ANNOTATIONS)
      .filter((a) => a.kind === "fixed")
      .map((a) => a.key);
    assert.deepEqual(Object.values(FIXED_KEYS), fixed);
    assert.deepEqual(KNOWN_KEYS, [...fixed, "env.<VAR>", "template.<VAR>", "env-from", "status"]);
    assert.equal(RESTART_ON_ROTATION_ANNOTATION, "sm-injector.io/restart-on-rotation");
    assert.equal(MAX_ANNOTATION_COUNT, MAX_FETCH_ENTRIES + fixed.length + 1);
  });
});
