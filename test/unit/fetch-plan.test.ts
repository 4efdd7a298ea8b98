// How `sm-injector fetch` groups its reads: BatchGetSecretValue for up to 20 AWSCURRENT secrets of a
// region, GetSecretValue for pinned versions and for a region with one secret.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { SecretSource } from "../../src/contract/fetch-spec.ts";
import { BATCH_LIMIT, batchable, planCalls } from "../../src/fetch/aws.ts";

const ids = (xs: readonly SecretSource[]) => xs.map((s) => s.secretId);

test("one region's secrets in one call; pinned versions and a lone secret one by one", () => {
  const plan = planCalls([
    { secretId: "a" },
    { secretId: "b", versionStage: "AWSCURRENT" },
    { secretId: "c", versionStage: "AWSPREVIOUS" },
    { secretId: "d", versionId: "v1" },
    { secretId: "e", region: "eu-west-1" },
    { secretId: "f", region: "eu-west-1" },
    { secretId: "g", region: "us-west-2" },
  ]);
  assert.deepEqual(plan.batches.map(ids), [
    ["a", "b"],
    ["e", "f"],
  ]);
  assert.deepEqual(ids(plan.singles).sort(), ["c", "d", "g"]);
});

test("more than 20: evenly sized calls (45 → 15 + 15 + 15, 21 → 11 + 10)", () => {
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ secretId: `s${i}` }));
  assert.deepEqual(
    planCalls(many(45)).batches.map((b) => b.length),
    [15, 15, 15],
  );
  assert.deepEqual(
    planCalls(many(21)).batches.map((b) => b.length),
    [11, 10],
  );
  assert.deepEqual(
    planCalls(many(20)).batches.map((b) => b.length),
    [20],
  );
});

test("every source is read exactly once, in calls of at most 20 of one region, AWSCURRENT only", () => {
  const source = fc.record(
    {
      secretId: fc.constantFrom("a", "b", "c", "d", "e", "f"),
      region: fc.constantFrom("us-east-1", "eu-west-1"),
      versionStage: fc.constantFrom("AWSCURRENT", "AWSPREVIOUS"),
      versionId: fc.constant("v1"),
    },
    { requiredKeys: ["secretId"] },
  );
  fc.assert(
    fc.property(fc.array(source, { maxLength: 120 }), (sources) => {
      const plan = planCalls(sources);
      const planned = [...plan.batches.flat(), ...plan.singles];
      assert.equal(planned.length, sources.length);
      assert.deepEqual(new Set(planned), new Set(sources));
      for (const b of plan.batches) {
        assert.ok(b.length >= 2 && b.length <= BATCH_LIMIT);
        assert.ok(b.every(batchable));
        assert.equal(new Set(b.map((s) => s.region ?? "")).size, 1);
      }
    }),
  );
});
