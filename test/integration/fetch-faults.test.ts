// `sm-injector fetch` when AWS misbehaves: a fault proxy in front of moto injects throttling,
// access denied, 5xx, connection resets and hangs, and counts the GetSecretValue calls that reach it.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { FetchSpecInput } from "../../src/spec/fetch-spec.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.ts";
import { fetchEnv, type Moto, runFetchInProcess, startMoto } from "../helpers/moto.ts";
import { sourceWithShell } from "../helpers/roundtrip.ts";

const GET = "secretsmanager.GetSecretValue";
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
  await Promise.all(Array.from({ length: 12 }, (_, i) => moto.createSecret(`erp/bulk/s${i}`, `v${i}`)));
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
      `sm-injector fetch: erp/production/database: AccessDeniedException as ${ID} — the access key lacks secretsmanager:GetSecretValue on erp/production/database (check the IAM policy and the secret's resource policy)\n`,
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
    assert.equal(proxy.maxInFlight, 3);
    assert.equal(proxy.connections, 3);
    const got = await sourceWithShell("dash", r.file, ["S0", "S11"]);
    assert.equal(got.get("S11")?.toString(), "v11");
  });
});
