// The init container's reading of SM_INJECTOR_SPEC (zod/mini, no locale): every refusal is worded.
import assert from "node:assert/strict";
import { test } from "node:test";
import { describeIssue, FetchSpecSchema } from "../../src/contract/fetch-spec.ts";

const valid = {
  version: 1,
  format: "shell",
  outputDir: "/run/sm-injector",
  fileName: "env",
  fileMode: 0o400,
  timeoutSeconds: 60,
  entries: [{ kind: "value", source: { secretId: "erp/production/database" }, env: "DATABASE_URL" }],
};

function firstProblem(spec: unknown): string {
  const r = FetchSpecSchema.safeParse(spec);
  assert.equal(r.success, false, "refused");
  return describeIssue(r.error?.issues[0] as NonNullable<typeof r.error>["issues"][number]);
}

test("a valid spec gets its defaults", () => {
  const r = FetchSpecSchema.parse(valid);
  assert.equal(r.concurrency, 8);
  assert.deepEqual(r.entries[0], { ...valid.entries[0], optional: false });
});

test("each kind of refusal says where and what", () => {
  assert.equal(
    firstProblem({ ...valid, format: "yaml" }),
    'format: expected one of "shell", "dotenv", "json", "files"',
  );
  assert.match(firstProblem({ ...valid, outputDir: "run" }), /^outputDir: must be an absolute path/);
  assert.equal(firstProblem({ ...valid, timeoutSeconds: "60" }), "timeoutSeconds: expected number");
  assert.equal(firstProblem({ ...valid, timeoutSeconds: 0 }), "timeoutSeconds: below the minimum 1");
  assert.equal(firstProblem({ ...valid, concurrency: 65 }), "concurrency: above the maximum 64");
  assert.equal(firstProblem({ ...valid, entries: [] }), "entries: below the minimum 1");
  assert.equal(firstProblem({ ...valid, extra: true }), "spec: unknown key extra");
  assert.equal(
    firstProblem({ ...valid, entries: [{ ...valid.entries[0], env: "1X" }] }),
    "entries.0.env: must be a valid environment variable name (letters, digits, _; not starting with a digit)",
  );
  assert.match(firstProblem({ ...valid, entries: [{ kind: "other" }] }), /^entries\.0(\.kind)?: /);
  assert.equal(firstProblem(null), "spec: expected object");
});

test("outputDir follows the same rule as the output-dir annotation and the webhook's roots", () => {
  for (const dir of ["/", "/run/sm-injector/", "/run//x", "/run/./x", "/run/../etc", "/run/a b", "run"])
    assert.match(firstProblem({ ...valid, outputDir: dir }), /^outputDir: must/, dir);
  for (const dir of ["/run/sm-injector", "/tmp/sm-injector-out-AbC12/out", "/a/.hidden/x_y-z"])
    assert.ok(FetchSpecSchema.safeParse({ ...valid, outputDir: dir }).success, dir);
});

test("the webhook's spec: batch only with --batch-get-secret-value, messageBytes only below 4096", async () => {
  const { buildFetchSpec } = await import("../../src/mutate/pod.ts");
  const { InjectorConfigSchema } = await import("../../src/contract/config.ts");
  const { loadWebhookConfig } = await import("../../src/webhook/config.ts");
  const flags = (extra: string[]) =>
    loadWebhookConfig(["--tls-cert-file=c", "--tls-key-file=k", "--image=i", ...extra], {}).injector;
  const spec = {
    format: "shell",
    outputDir: "/run/sm-injector",
    fileName: "env",
    timeoutSeconds: 60,
    entries: valid.entries,
  } as unknown as Parameters<typeof buildFetchSpec>[0];
  const off = buildFetchSpec(spec, 0o400, InjectorConfigSchema.parse({ image: "i" }), 2);
  assert.equal("batch" in off, false);
  assert.equal("messageBytes" in off, false, "4096 for up to three containers: left out");
  const on = buildFetchSpec(spec, 0o400, flags(["--batch-get-secret-value=true"]), 5);
  assert.equal(on.batch, true);
  assert.equal(on.messageBytes, Math.floor(12288 / 5));
  assert.equal(FetchSpecSchema.parse(on).messageBytes, 2457);
  assert.throws(() => flags(["--batch-get-secret-value=yes"]), /--batch-get-secret-value/);
});
