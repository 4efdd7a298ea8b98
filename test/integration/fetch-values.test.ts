// Issue 11, cases 7, 8 and 12 through the real AWS SDK and the real `sm-injector fetch` process:
// values written exactly as they appear in the secret; no part of a value in any output when the
// endpoint answers a malformed 200; AWS error text sanitised and bounded; an answer with neither
// SecretString nor SecretBinary fails closed. moto behind the fault proxy.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { FetchSpecInput } from "../../src/contract/fetch-spec.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.ts";
import { type FetchRun, fetchEnv, type Moto, runFetchCli, startMoto } from "../helpers/moto.ts";
import { sourceWithShell } from "../helpers/roundtrip.ts";

const GET = "secretsmanager.GetSecretValue";
const NUMBERS = "erp/production/numbers";
const SURROGATE = "erp/production/surrogate";
const JWT = "erp/staging/jwt/secret_key";
const SHELLISH = "erp/production/shellish";
/** A secret RDS manages itself: named SERVICE!NAME, which users cannot create but pods read. */
const RDS_MANAGED = "rds!db-1a96bebc-86c1-4982-9f9f-7d6a651d2464";
/** A value that must never appear, in any 8-character piece, outside the output file. */
const PLANTED = "PLANTED-7f3a-s3cr3t-v4lu3-0042";

let moto: Moto;
let proxy: FaultProxy;
let scratch: string;
let runs = 0;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-fetch-values-"));
  moto = await startMoto();
  proxy = await startFaultProxy(moto.endpoint);
  await moto.createSecret(
    NUMBERS,
    '{"BIG":12345678901234567890,"HUGE":1e400,"MONEY":1.50,"OBJ":{"z":1,"a":[1.0]},"NAME":"erp"}',
  );
  await moto.createSecret(SURROGATE, '{"OK":"fine","BAD":"x\\ud800y"}');
  await moto.createSecret(JWT, PLANTED);
  await moto.createSecret(RDS_MANAGED, JSON.stringify({ username: "postgres", password: "p@ss!w0rd" }));
  await moto.createSecret(
    SHELLISH,
    JSON.stringify({ UID: "1000", RANDOM: "4", DATABASE_URL: "postgres://db" }),
  );
});

after(async () => {
  await proxy?.close();
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

beforeEach(() => proxy.reset());

async function run(
  entries: FetchSpecInput["entries"],
  options: Partial<FetchSpecInput> = {},
  extraEnv: (dir: string) => Promise<NodeJS.ProcessEnv> = async () => ({}),
) {
  const dir = join(scratch, `run-${runs++}`);
  const outputDir = join(dir, "out");
  await mkdir(outputDir, { recursive: true });
  // The kubelet creates the termination message file; the init container only writes into it.
  const terminationLog = join(dir, "termination-log");
  await writeFile(terminationLog, "");
  const spec: FetchSpecInput = {
    version: 1,
    format: "shell",
    outputDir,
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 20,
    entries,
    ...options,
  };
  const r = await runFetchCli(
    fetchEnv(proxy.endpoint, dir, {
      SM_INJECTOR_SPEC: JSON.stringify(spec),
      SM_INJECTOR_TERMINATION_LOG: terminationLog,
      ...(await extraEnv(dir)),
    }),
  );
  return {
    ...r,
    file: join(outputDir, "env"),
    written: await readdir(outputDir),
    terminationMessage: await readFile(terminationLog, "utf8"),
  };
}

/** No 8-character piece of `value` in stdout, stderr or the termination message. */
function assertNothingOf(value: string, r: FetchRun & { terminationMessage: string }) {
  for (const [where, text] of [
    ["stdout", r.stdout],
    ["stderr", r.stderr],
    ["the termination message", r.terminationMessage],
  ] as const) {
    for (let i = 0; i + 8 <= value.length; i++) {
      const piece = value.slice(i, i + 8);
      assert.ok(!text.includes(piece), `${where} holds ${JSON.stringify(piece)}: ${text.slice(0, 2000)}`);
    }
  }
}

/** Every line bounded and free of control characters (the kubelet shows the tail as the pod's message). */
function assertBoundedLines(r: FetchRun) {
  for (const line of r.stderr.split("\n")) {
    assert.ok(line.length <= 1024, `a stderr line of ${line.length} characters: ${line.slice(0, 300)}…`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
    assert.doesNotMatch(line, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, line.slice(0, 300));
  }
  for (const line of r.stdout.split("\n"))
    assert.ok(line.length <= 8192, `a log line of ${line.length} characters: ${line.slice(0, 300)}…`);
}

const jwt: FetchSpecInput["entries"] = [{ kind: "value", source: { secretId: JWT }, env: "JWT_SECRET_KEY" }];

describe("a secret an AWS service manages (rds!db-…)", () => {
  test("read by name with a key, sourced by dash", async () => {
    const r = await run([
      { kind: "value", source: { secretId: RDS_MANAGED }, key: "password", env: "DB_PASSWORD" },
      { kind: "value", source: { secretId: RDS_MANAGED }, key: "username", env: "DB_USER" },
    ]);
    assert.equal(r.code, 0, r.stderr);
    const got = await sourceWithShell("dash", r.file, ["DB_PASSWORD", "DB_USER"]);
    assert.deepEqual(Object.fromEntries([...got].map(([k, v]) => [k, v.toString("utf8")])), {
      DB_PASSWORD: "p@ss!w0rd",
      DB_USER: "postgres",
    });
  });
});

describe("case 7: values exactly as they appear in the secret", () => {
  test("env-from of a JSON secret with numbers and an object: their exact text, sourced by dash", async () => {
    const r = await run([{ kind: "expand", source: { secretId: NUMBERS } }]);
    assert.equal(r.code, 0, r.stderr);
    const got = await sourceWithShell("dash", r.file, ["BIG", "HUGE", "MONEY", "OBJ", "NAME"]);
    assert.deepEqual(Object.fromEntries([...got].map(([k, v]) => [k, v.toString("utf8")])), {
      BIG: "12345678901234567890",
      HUGE: "1e400",
      MONEY: "1.50",
      OBJ: '{"z":1,"a":[1.0]}',
      NAME: "erp",
    });
  });

  test("a lone surrogate in a selected value: refused naming the secret and the key, nothing written", async () => {
    const r = await run([{ kind: "value", source: { secretId: SURROGATE }, env: "BAD", key: "BAD" }]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /erp\/production\/surrogate key "BAD": the value holds a lone surrogate/);
    assert.deepEqual(r.written, []);
  });
});

describe("case 8: no part of a value in a log, error text sanitised and bounded", () => {
  test("a malformed 200 answer holding the value: a fixed description, nothing of the body", async () => {
    proxy.always(GET, { kind: "body", body: `{"Name":"${JWT}","SecretString":${PLANTED}}` });
    const r = await run(jwt);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /erp\/staging\/jwt\/secret_key: MalformedResponse .*could not be parsed/);
    assert.deepEqual(r.written, []);
    assertNothingOf(PLANTED, r);
    assertBoundedLines(r);
  });

  test("a truncated 200 answer: the same", async () => {
    proxy.always(GET, { kind: "body", body: `{"Name":"${JWT}","SecretString":"${PLANTED}` });
    const r = await run(jwt);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /MalformedResponse/);
    assertNothingOf(PLANTED, r);
  });

  test("an AWS error with a 2 MB message, newlines and terminal escapes: one short clean line", async () => {
    proxy.always(GET, {
      kind: "status",
      status: 400,
      type: "ValidationException",
      message: `bad\u001b[2J\rparameter ${"A".repeat(2_000_000)}\nsecond line\nthird`,
    });
    const r = await run(jwt);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ValidationException as .* refused the parameters \(bad \[2J parameter A+…\)/);
    assertBoundedLines(r);
    assert.ok(r.stderr.length < 4096, `stderr is ${r.stderr.length} characters`);
  });
});

describe("case 8 for credentials: STS answers", () => {
  /** IRSA: a web identity token file and a role, no keys; STS through the fault proxy. */
  const irsa = async (dir: string): Promise<NodeJS.ProcessEnv> => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const token = join(dir, "token");
    await writeFile(
      token,
      `${b64({ alg: "RS256" })}.${b64({ sub: "system:serviceaccount:erp:api", aud: ["sts.amazonaws.com"] })}.c2ln`,
    );
    return {
      AWS_ACCESS_KEY_ID: undefined,
      AWS_SECRET_ACCESS_KEY: undefined,
      AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/erp-api",
      AWS_WEB_IDENTITY_TOKEN_FILE: token,
    };
  };

  for (const [what, body] of [
    [
      "a malformed AssumeRoleWithWebIdentity answer holding a secret access key",
      `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><SecretAccessKey>${PLANTED}</Secret<<AccessKeyId>`,
    ],
    [
      "a truncated one",
      `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><SecretAccessKey>${PLANTED}`,
    ],
  ] as const) {
    test(`${what}: nothing of it in any output`, async () => {
      proxy.always("sts.AssumeRoleWithWebIdentity", { kind: "body", body });
      const r = await run(jwt, {}, irsa);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /erp\/staging\/jwt\/secret_key: no AWS credentials for us-east-1: MalformedResponse .* the answer from STS could not be parsed/,
      );
      assertNothingOf(PLANTED, r);
      assertBoundedLines(r);
    });
  }
});

describe("case 12: an answer with neither SecretString nor SecretBinary", () => {
  test("fails closed naming the secret; nothing written", async () => {
    proxy.always(GET, {
      kind: "body",
      body: JSON.stringify({
        ARN: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${JWT}-AbCdEf`,
        Name: JWT,
        VersionId: "v1",
      }),
    });
    const r = await run(jwt);
    assert.equal(r.code, 1, r.stdout);
    assert.match(
      r.stderr,
      /erp\/staging\/jwt\/secret_key: EmptySecretValue .*neither SecretString nor SecretBinary/,
    );
    assert.deepEqual(r.written, []);
  });

  test("a BatchGetSecretValue entry with neither: read again with GetSecretValue, never written empty", async () => {
    proxy.inject("secretsmanager.BatchGetSecretValue", {
      kind: "body",
      body: JSON.stringify({
        SecretValues: [
          {
            ARN: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${JWT}-AbCdEf`,
            Name: JWT,
            VersionId: "v1",
          },
          { Name: NUMBERS, VersionId: "v1", SecretString: '{"NAME":"erp"}' },
        ],
        Errors: [],
      }),
    });
    const r = await run(
      [...jwt, { kind: "value", source: { secretId: NUMBERS }, env: "NAME", key: "NAME" }],
      { batch: true },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(GET), 1, "the empty entry is read again");
    const got = await sourceWithShell("dash", r.file, ["JWT_SECRET_KEY", "NAME"]);
    assert.equal(got.get("JWT_SECRET_KEY")?.toString(), PLANTED);
    assert.equal(got.get("NAME")?.toString(), "erp");
  });
});

describe("case 10: env-from keys a shell will not set", () => {
  test("UID and RANDOM from env-from: refused at write time, each naming the secret, the key and the variable; renamed, written", async () => {
    const r = await run([{ kind: "expand", source: { secretId: SHELLISH } }]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /erp\/production\/shellish key "UID": cannot be written in the shell format: variable UID cannot be set by sourcing the shell file: read-only in bash/,
    );
    assert.match(
      r.stderr,
      /erp\/production\/shellish key "RANDOM": .*variable RANDOM .*bash keeps this variable for itself/,
    );
    assert.deepEqual(r.written, []);

    // Renamed, they are written.
    const renamed = await run([
      { kind: "expand", source: { secretId: SHELLISH }, rename: { UID: "APP_UID", RANDOM: "APP_RANDOM" } },
    ]);
    assert.equal(renamed.code, 0, renamed.stderr);
    const got = await sourceWithShell("bash", renamed.file, ["APP_UID", "APP_RANDOM", "DATABASE_URL"]);
    assert.equal(got.get("APP_UID")?.toString(), "1000");
    assert.equal(got.get("APP_RANDOM")?.toString(), "4");
  });
});
