// `sm-injector fetch` when AWS misbehaves: a fault proxy in front of moto injects throttling,
// access denied, 5xx, connection resets and hangs, and counts the GetSecretValue and
// BatchGetSecretValue calls that reach it.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { FetchSpecInput, SecretSource } from "../../src/contract/fetch-spec.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.ts";
import { fetchEnv, type Moto, runFetchInProcess, startMoto } from "../helpers/moto.ts";
import { sourceWithShell } from "../helpers/roundtrip.ts";

const GET = "secretsmanager.GetSecretValue";
const BATCH = "secretsmanager.BatchGetSecretValue";
const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";

let moto: Moto;
let proxy: FaultProxy;
let scratch: string;
let runs = 0;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-fetch-faults-"));
  moto = await startMoto();
  proxy = await startFaultProxy(moto.endpoint);
  await moto.createSecret(DB, JSON.stringify({ DATABASE_URL: "postgresql://u:p@db/erp", password: "p" }));
  await moto.createSecret(JWT, "jwt-secret");
  await Promise.all(Array.from({ length: 45 }, (_, i) => moto.createSecret(`erp/bulk/s${i}`, `v${i}`)));
  await moto.createSecret("erp/bulk/s0", "eu-v0", { region: "eu-west-1" });
  await moto.createSecret("erp/bulk/s1", "eu-v1", { region: "eu-west-1" });
});

after(async () => {
  await proxy?.close();
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

beforeEach(() => proxy.reset());

async function run(entries: FetchSpecInput["entries"], spec: Partial<FetchSpecInput> = {}) {
  const dir = join(scratch, `run-${runs++}`);
  const outputDir = join(dir, "out");
  await mkdir(outputDir, { recursive: true });
  const full: FetchSpecInput = {
    version: 1,
    format: "shell",
    outputDir,
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 20,
    entries,
    ...spec,
  };
  const r = await runFetchInProcess(
    fetchEnv(proxy.endpoint, dir, { SM_INJECTOR_SPEC: JSON.stringify(full) }),
  );
  return { ...r, file: join(outputDir, "env"), written: await readdir(outputDir) };
}

const one: FetchSpecInput["entries"] = [{ kind: "value", source: { secretId: JWT }, env: "JWT_SECRET_KEY" }];
const ID = "the access key in AWS_ACCESS_KEY_ID";

describe("transient failures are retried", () => {
  test("throttled twice, then success: three calls, the file written", async () => {
    proxy.inject(GET, { kind: "throttle" }, { kind: "throttle" });
    const r = await run(one);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 3);
    assert.equal(r.logs.find((l) => l.msg === "fetched secret")?.attempts, 3);
    assert.equal(r.logs.at(-1)?.apiCalls, 3);
    assert.equal(
      (await sourceWithShell("dash", r.file, ["JWT_SECRET_KEY"])).get("JWT_SECRET_KEY")?.toString(),
      "jwt-secret",
    );
  });

  test("500 and 503, then success", async () => {
    proxy.inject(
      GET,
      { kind: "status", status: 500 },
      { kind: "status", status: 503, type: "ServiceUnavailable" },
    );
    const r = await run(one);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 3);
  });

  test("a connection reset, then success", async () => {
    proxy.inject(GET, { kind: "reset" });
    const r = await run(one);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 2);
  });

  test("a hung attempt is abandoned after a third of the deadline and retried", async () => {
    proxy.inject(GET, { kind: "hang" });
    const t0 = performance.now();
    const r = await run(one, { timeoutSeconds: 3 });
    const ms = performance.now() - t0;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 2);
    assert.ok(ms >= 900 && ms < 2500, `took ${ms} ms`);
  });

  test("persistent throttling gives up at the deadline, naming the throttling", async () => {
    proxy.always(GET, { kind: "throttle" });
    proxy.delayMs = 300; // 8 attempts cannot fit in the 2 s deadline: it is the deadline that ends them
    const t0 = performance.now();
    const r = await run(one, { timeoutSeconds: 2 });
    const ms = performance.now() - t0;
    assert.equal(r.code, 1);
    assert.ok(ms >= 1900 && ms < 3500, `took ${ms} ms`);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/staging\/jwt\/secret_key: ThrottlingException as the access key in AWS_ACCESS_KEY_ID — still throttled by Secrets Manager at the 2 s deadline, after \d attempts?; spread pod starts/,
    );
    assert.ok(proxy.count(GET) >= 2 && proxy.count(GET) < 8, `${proxy.count(GET)} calls`);
    assert.deepEqual(r.written, []);
  });

  test("no answer at all: every attempt times out, exit 1 at the deadline pointing at the network path", async () => {
    proxy.always(GET, { kind: "hang" });
    const t0 = performance.now();
    const r = await run(one, { timeoutSeconds: 1 });
    assert.ok(performance.now() - t0 < 2500);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/staging\/jwt\/secret_key: ETIMEDOUT as .* — network error talking to Secrets Manager at the 1 s deadline, after \d attempts \(no response within 333 ms\): check that the pod can reach Secrets Manager \(VPC endpoint, NAT, DNS, NetworkPolicy egress\)/,
    );
    assert.ok(proxy.count(GET) >= 2);
  });
});

describe("final failures are not retried", () => {
  test("access denied: exactly one call and the README's message", async () => {
    proxy.inject(GET, { kind: "access-denied" });
    const r = await run([{ kind: "expand", source: { secretId: DB } }]);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 1);
    assert.equal(
      r.stderr,
      `sm-injector fetch: erp/production/database: AccessDeniedException as ${ID} — the access key lacks secretsmanager:GetSecretValue on erp/production/database (check the IAM policy and the secret's resource policy) [access-denied]\n`,
    );
    assert.deepEqual(r.written, []);
  });

  test("access denied is not skipped even when the entry is optional (fail closed)", async () => {
    proxy.inject(GET, { kind: "access-denied" });
    const r = await run([{ ...one[0], optional: true } as FetchSpecInput["entries"][number]]);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 1);
    assert.match(r.stderr, /AccessDeniedException/);
  });

  test("a KMS decryption failure: one call, pointing at kms:Decrypt", async () => {
    proxy.inject(GET, {
      kind: "status",
      status: 400,
      type: "DecryptionFailure",
      message: "KMS key is disabled",
    });
    const r = await run(one);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 1);
    assert.match(r.stderr, /DecryptionFailure as .* needs kms:Decrypt on the secret's KMS key/);
  });

  test("an invalid parameter: one call", async () => {
    proxy.inject(GET, {
      kind: "status",
      status: 400,
      type: "InvalidParameterException",
      message: "Invalid version id",
    });
    const r = await run(one);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 1);
    assert.match(
      r.stderr,
      /InvalidParameterException as .* — Secrets Manager refused the parameters \(Invalid version id\)/,
    );
  });

  test("a missing secret (moto's own ResourceNotFoundException): one call", async () => {
    const r = await run([{ kind: "value", source: { secretId: "erp/production/nope" }, env: "X" }]);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 1);
    assert.match(
      r.stderr,
      /ResourceNotFoundException as .* — no secret named erp\/production\/nope in region us-east-1/,
    );
  });

  test("one secret failing fails the run: nothing written, the others' values fetched but discarded", async () => {
    proxy.inject(GET, { kind: "access-denied" });
    const r = await run(
      [
        ...one,
        { kind: "expand", source: { secretId: DB } },
        { kind: "value", source: { secretId: "erp/bulk/s0" }, env: "S0" },
      ],
      { concurrency: 1 },
    );
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1);
    assert.deepEqual(r.written, []);
    assert.equal(proxy.count(GET), 3);
  });
});

describe("calls made", () => {
  test("two entries on the same secret: one GetSecretValue", async () => {
    const r = await run([
      { kind: "value", source: { secretId: DB }, env: "DATABASE_URL", key: "DATABASE_URL" },
      { kind: "value", source: { secretId: DB }, env: "DB_PASSWORD", key: "password" },
      { kind: "expand", source: { secretId: DB }, prefix: "ALL_" },
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 1);
    assert.deepEqual([...proxy.counts.keys()], [GET]);
  });

  test("12 secrets with concurrency 3: 12 calls, never more than 3 in flight, over 3 kept-alive connections", async () => {
    proxy.delayMs = 50;
    const r = await run(
      Array.from({ length: 12 }, (_, i) => ({
        kind: "value" as const,
        source: { secretId: `erp/bulk/s${i}` },
        env: `S${i}`,
      })),
      { concurrency: 3 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 12);
    assert.equal(proxy.count(BATCH), 0, "no BatchGetSecretValue unless the spec asks for it");
    assert.equal(proxy.maxInFlight, 3);
    assert.equal(proxy.connections, 3);
    const got = await sourceWithShell("dash", r.file, ["S0", "S11"]);
    assert.equal(got.get("S11")?.toString(), "v11");
  });
});

const bulk = (from: number, to: number, source: Partial<SecretSource> = {}) =>
  Array.from({ length: to - from }, (_, i) => ({
    kind: "value" as const,
    source: { secretId: `erp/bulk/s${from + i}`, ...source },
    env: `S${from + i}${source.region ? "_EU" : ""}`,
  }));

describe("with batch (--batch-get-secret-value): up to 20 secrets of a region in one BatchGetSecretValue", () => {
  test("12 secrets: one call, no GetSecretValue, every value exact, a log line per secret", async () => {
    proxy.delayMs = 20;
    const r = await run(bulk(0, 12), { batch: true });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...proxy.counts.entries()], [[BATCH, 1]]);
    const got = await sourceWithShell("dash", r.file, ["S0", "S5", "S11"]);
    assert.deepEqual(
      ["S0", "S5", "S11"].map((k) => got.get(k)?.toString()),
      ["v0", "v5", "v11"],
    );
    const fetched = r.logs.filter((l) => l.msg === "fetched secret");
    assert.equal(fetched.length, 12);
    assert.ok(fetched.every((l) => l.api === "BatchGetSecretValue" && typeof l.versionId === "string"));
    assert.equal(r.logs.at(-1)?.apiCalls, 1);
  });

  test("45 secrets: three calls of 15, in parallel", async () => {
    proxy.delayMs = 50;
    const r = await run(bulk(0, 45), { concurrency: 8, batch: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(BATCH), 3);
    assert.equal(proxy.count(GET), 0);
    assert.equal(proxy.maxInFlight, 3);
    const got = await sourceWithShell("dash", r.file, ["S44"]);
    assert.equal(got.get("S44")?.toString(), "v44");
  });

  test("one call per region; a pinned version and a lone secret are read with GetSecretValue", async () => {
    const r = await run(
      [
        ...bulk(0, 2),
        ...bulk(0, 2, { region: "eu-west-1" }),
        { kind: "value", source: { secretId: JWT, versionStage: "AWSCURRENT" }, env: "JWT_CURRENT" },
        {
          kind: "value",
          source: { secretId: JWT, versionStage: "AWSPREVIOUS" },
          env: "JWT_PREVIOUS",
          optional: true,
        },
        { kind: "value", source: { secretId: DB, region: "us-west-2" }, env: "DB_WEST", optional: true },
      ],
      { batch: true },
    );
    assert.equal(r.code, 0, r.stderr);
    // us-east-1: s0, s1 and JWT (AWSCURRENT is what the batch reads); eu-west-1: s0, s1.
    assert.equal(proxy.count(BATCH), 2);
    // JWT's AWSPREVIOUS (none: skipped) and the one secret of us-west-2 (none there: skipped).
    assert.equal(proxy.count(GET), 2);
    const got = await sourceWithShell("dash", r.file, ["S0", "S0_EU", "S1_EU", "JWT_CURRENT"]);
    assert.deepEqual(
      ["S0", "S0_EU", "S1_EU", "JWT_CURRENT"].map((k) => got.get(k)?.toString()),
      ["v0", "eu-v0", "eu-v1", "jwt-secret"],
    );
  });

  test("by full and partial ARN: matched to the answer's entries", async () => {
    const { arn } = await moto.createSecret("erp/arn/check", "by-arn");
    const { arn: other } = await moto.createSecret("erp/arn/other", "by-partial-arn");
    const r = await run(
      [
        { kind: "value", source: { secretId: arn }, env: "FULL" },
        { kind: "value", source: { secretId: other.slice(0, -7) }, env: "PARTIAL" },
      ],
      { batch: true },
    );
    assert.equal(r.code, 0, r.stderr);
    const got = await sourceWithShell("dash", r.file, ["FULL", "PARTIAL"]);
    assert.equal(got.get("FULL")?.toString(), "by-arn");
    assert.equal(got.get("PARTIAL")?.toString(), "by-partial-arn");
    assert.equal(proxy.count(BATCH), 1);
  });

  test("a secret the batch does not return is read again alone: its error is GetSecretValue's", async () => {
    const r = await run(
      [
        ...one,
        { kind: "value", source: { secretId: "erp/production/nope" }, env: "NOPE" },
        { kind: "value", source: { secretId: "erp/production/gone" }, env: "GONE", optional: true },
      ],
      { batch: true },
    );
    assert.equal(r.code, 1);
    assert.equal(proxy.count(BATCH), 1);
    assert.equal(proxy.count(GET), 2);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(
      r.stderr,
      /erp\/production\/nope: ResourceNotFoundException as .* — no secret named erp\/production\/nope/,
    );
    assert.deepEqual(r.written, []);
  });

  test("throttled: not retried (its quota is 1% of GetSecretValue's), read one by one at once", async () => {
    proxy.always(BATCH, { kind: "throttle" });
    const r = await run(bulk(0, 3), { batch: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(BATCH), 1);
    assert.equal(proxy.count(GET), 3);
    assert.ok(r.logs.filter((l) => l.msg === "fetched secret").every((l) => l.api === "GetSecretValue"));
  });

  test("refused (no permission): one failed call, then one by one, never more than the concurrency in flight", async () => {
    proxy.always(BATCH, { kind: "access-denied" });
    proxy.delayMs = 50;
    const r = await run(bulk(0, 45), { concurrency: 3, batch: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(BATCH), 3);
    assert.equal(proxy.count(GET), 45);
    assert.equal(proxy.maxInFlight, 3);
    const fallback = r.logs.find(
      (l) => l.msg === "BatchGetSecretValue failed; reading these secrets one by one",
    );
    assert.equal(fallback?.code, "AccessDeniedException");
    assert.match(String(fallback?.hint), /secretsmanager:BatchGetSecretValue/);
    assert.equal(r.logs.at(-1)?.apiCalls, 48);
  });

  test("an error the batch cannot get past (not throttling): one by one, with the same messages", async () => {
    proxy.always(BATCH, { kind: "status", status: 400, type: "ValidationException", message: "nope" });
    proxy.inject(GET, { kind: "access-denied" });
    const r = await run(bulk(0, 3), { concurrency: 1, batch: true });
    assert.equal(r.code, 1);
    assert.equal(proxy.count(BATCH), 1);
    assert.equal(proxy.count(GET), 3);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/bulk\/s0: AccessDeniedException as .* lacks secretsmanager:GetSecretValue on erp\/bulk\/s0/,
    );
    assert.deepEqual(r.written, []);
  });
});
