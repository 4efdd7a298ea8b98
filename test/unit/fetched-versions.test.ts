// The termination message the init container leaves for the rotation controller.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeVersions,
  encodeVersions,
  TERMINATION_MESSAGE_LIMIT,
  type VersionRecord,
  versionsDigest,
} from "../../src/contract/fetched-versions.ts";

const record = fc.record({
  secretId: fc.string({ minLength: 1, maxLength: 80 }),
  region: fc.constantFrom("", "us-east-1", "eu-west-1"),
  stage: fc.constantFrom("AWSCURRENT", "AWSPREVIOUS", "blue"),
  versionId: fc.uuid(),
});

test("round trip when the records fit; the digest alone when they do not; always within 4096 bytes", () => {
  fc.assert(
    fc.property(fc.array(record, { maxLength: 120 }), (records) => {
      const message = encodeVersions(records);
      assert.ok(Buffer.byteLength(message) <= TERMINATION_MESSAGE_LIMIT);
      const decoded = decodeVersions(message);
      assert.equal(decoded?.digest, versionsDigest(records));
      // (fast-check records have a null prototype: compare as plain objects)
      if (decoded?.records)
        assert.deepEqual(
          decoded.records,
          records.map((r) => ({ ...r })),
        );
      else assert.ok(Buffer.byteLength(JSON.stringify(records)) > 3000, "left out only when large");
    }),
  );
});

test("the digest does not depend on order or repeats, and does on every field", () => {
  const a: VersionRecord = { secretId: "erp/a", region: "us-east-1", stage: "AWSCURRENT", versionId: "v1" };
  const b: VersionRecord = { secretId: "erp/b", region: "us-east-1", stage: "AWSCURRENT", versionId: "v2" };
  assert.equal(versionsDigest([a, b]), versionsDigest([b, a, a]));
  for (const field of ["secretId", "region", "stage", "versionId"] as const)
    assert.notEqual(versionsDigest([a, b]), versionsDigest([{ ...a, [field]: `${a[field]}x` }, b]), field);
});

test("anything else is not ours: undefined", () => {
  for (const m of [
    undefined,
    "",
    "sm-injector fetch: erp/x: AccessDenied",
    "{}",
    '{"digest":"00"}',
    "{not json",
  ])
    assert.equal(decodeVersions(m), undefined, String(m));
  // Ours with broken records: the digest still counts.
  const digest = "a".repeat(64);
  assert.deepEqual(decodeVersions(JSON.stringify({ "sm-injector/versions": 1, digest, records: [[1]] })), {
    digest,
  });
});
