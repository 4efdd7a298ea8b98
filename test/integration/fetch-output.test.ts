// `sm-injector fetch` against moto's Secrets Manager through the real AWS SDK: the strategy's
// example secrets in every format, read back by the programs that consume them; versions; binary
// secrets; spec errors; and no value anywhere but the output file.
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DeleteSecretCommand, UpdateSecretVersionStageCommand } from "@aws-sdk/client-secrets-manager";
import type { FetchSpecInput } from "../../src/contract/fetch-spec.ts";
import { decodeVersions, versionsDigest } from "../../src/contract/fetched-versions.ts";
import { fetchEnv, type Moto, runFetchCli, runFetchInProcess, startMoto } from "../helpers/moto.ts";
import {
  parseWithNodeEnvFile,
  parseWithPythonDotenv,
  readWithPydanticSettings,
  sourceWithShell,
} from "../helpers/roundtrip.ts";

const DB = "erp/production/database";
const JWT = "erp/staging/jwt/secret_key";
const S3 = "erp/production/aws/s3_app_user_credentials";

// Values a shell or a dotenv parser could get wrong, but that every format can carry.
const DATABASE_URL = "postgresql://erp_app:p@ss'w0rd$USER`id`;&|*@db.internal:5432/erp?sslmode=require";
const JWT_SECRET = "jwt-hs512 secret with 'single' quotes,\nsecond line, $HOME and a \\ backslash";
const S3_KEYS = {
  AWS_ACCESS_KEY_ID: "AKIAIOSFODNN7EXAMPLE",
  AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

/** The example pod: DATABASE_URL from a JSON key, a plaintext JWT key, the S3 user's two keys. */
const EXAMPLE_ENTRIES: FetchSpecInput["entries"] = [
  { kind: "value", source: { secretId: DB }, env: "DATABASE_URL", key: "DATABASE_URL" },
  { kind: "value", source: { secretId: JWT }, env: "JWT_SECRET_KEY" },
  { kind: "expand", source: { secretId: S3 }, prefix: "S3_" },
];
const EXPECTED: Record<string, string> = {
  DATABASE_URL,
  JWT_SECRET_KEY: JWT_SECRET,
  S3_AWS_ACCESS_KEY_ID: S3_KEYS.AWS_ACCESS_KEY_ID,
  S3_AWS_SECRET_ACCESS_KEY: S3_KEYS.AWS_SECRET_ACCESS_KEY,
};
const NAMES = Object.keys(EXPECTED);

let moto: Moto;
let scratch: string;
let runs = 0;

/** A fresh output directory and the env for a spec writing there. */
async function setup(
  spec: Partial<FetchSpecInput> & Pick<FetchSpecInput, "entries">,
  extra: NodeJS.ProcessEnv = {},
) {
  const dir = join(scratch, `run-${runs++}`);
  const outputDir = join(dir, "out");
  const home = join(dir, "home");
  await mkdir(outputDir, { recursive: true });
  await mkdir(home);
  const full: FetchSpecInput = {
    version: 1,
    format: "shell",
    outputDir,
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 20,
    ...spec,
  };
  const env = fetchEnv(moto.endpoint, home, {
    SM_INJECTOR_SPEC: JSON.stringify(full),
    TMPDIR: home,
    ...extra,
  });
  return { dir, outputDir, file: join(outputDir, full.fileName), env };
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-fetch-output-"));
  moto = await startMoto();
  await moto.createSecret(DB, JSON.stringify({ DATABASE_URL, pool: { max: 10 }, port: 5432 }));
  await moto.createSecret(JWT, JWT_SECRET);
  await moto.createSecret(S3, JSON.stringify(S3_KEYS));
});

after(async () => {
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

async function assertOnlyOutput(outputDir: string, names: string[]) {
  // No temp file left behind, nothing else written.
  assert.deepEqual((await readdir(outputDir)).sort(), [...names].sort());
}

describe("the example secrets, read back exactly in every format", () => {
  test("shell: `. file` in dash and bash yields the exact values; mode 0400", async () => {
    const s = await setup({ format: "shell", entries: EXAMPLE_ENTRIES });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    for (const shell of ["dash", "bash"] as const) {
      const got = await sourceWithShell(shell, s.file, NAMES);
      assert.deepEqual(
        Object.fromEntries([...got].map(([k, v]) => [k, v.toString("utf8")])),
        EXPECTED,
        shell,
      );
    }
    assert.equal((await stat(s.file)).mode & 0o777, 0o400);
    await assertOnlyOutput(s.outputDir, ["env"]);
  });

  test("dotenv: python-dotenv and Node's --env-file read the exact values; mode 0440", async () => {
    const s = await setup({ format: "dotenv", fileName: ".env", fileMode: 0o440, entries: EXAMPLE_ENTRIES });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(Object.fromEntries(await parseWithPythonDotenv(s.file)), EXPECTED);
    assert.deepEqual(Object.fromEntries(await parseWithNodeEnvFile(s.file)), EXPECTED);
    assert.deepEqual(
      Object.fromEntries(await readWithPydanticSettings({ envFile: s.file }, NAMES)),
      EXPECTED,
      "pydantic-settings env_file",
    );
    assert.equal((await stat(s.file)).mode & 0o777, 0o440);
  });

  test("json: JSON.parse gives the exact values", async () => {
    const s = await setup({ format: "json", fileName: "secrets.json", entries: EXAMPLE_ENTRIES });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(await readFile(s.file, "utf8")), EXPECTED);
  });

  test("files: one file per variable with the exact bytes; pydantic-settings secrets_dir reads them", async () => {
    const s = await setup({ format: "files", entries: EXAMPLE_ENTRIES });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    await assertOnlyOutput(s.outputDir, NAMES);
    for (const [name, value] of Object.entries(EXPECTED)) {
      assert.equal(await readFile(join(s.outputDir, name), "utf8"), value, name);
      assert.equal((await stat(join(s.outputDir, name))).mode & 0o777, 0o400);
    }
    const got = await readWithPydanticSettings({ secretsDir: s.outputDir }, NAMES);
    assert.deepEqual(Object.fromEntries(got), EXPECTED);
  });

  test("a log line per fetched secret and a summary, never a value", async () => {
    const s = await setup(
      { entries: EXAMPLE_ENTRIES },
      { POD_NAME: "erp-api-7d9f", POD_NAMESPACE: "erp", POD_SERVICE_ACCOUNT: "erp-api" },
    );
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    const fetched = r.logs.filter((l) => l.msg === "fetched secret");
    assert.deepEqual(fetched.map((l) => l.secretId).sort(), [DB, S3, JWT].sort());
    for (const l of fetched) {
      assert.equal(typeof l.versionId, "string");
      assert.deepEqual(l.versionStages, ["AWSCURRENT"]);
      assert.equal(typeof l.bytes, "number");
      assert.equal(typeof l.durationMs, "number");
      assert.equal(l.pod, "erp-api-7d9f");
      assert.equal(l.namespace, "erp");
      assert.equal(l.serviceAccount, "erp-api");
    }
    const summary = r.logs.at(-1);
    assert.equal(summary?.msg, "secrets written");
    assert.equal(summary?.variables, 4);
    assert.ok(fetched.every((l) => l.api === "GetSecretValue"));
    assert.equal(summary?.apiCalls, 3);
    assert.equal(summary?.output, s.file);
  });

  test("running again replaces the file atomically (a restarted init container)", async () => {
    const s = await setup({ entries: EXAMPLE_ENTRIES });
    assert.equal((await runFetchInProcess(s.env)).code, 0);
    const first = await lstat(s.file);
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(
      (await lstat(s.file)).ino,
      first.ino,
      "a new file renamed into place, not rewritten in place",
    );
    await assertOnlyOutput(s.outputDir, ["env"]);
  });
});

describe("versions, regions and binary secrets", () => {
  const ROTATED = "erp/production/rotated";
  let v1: string;
  let v2: string;
  let v3: string;

  before(async () => {
    v1 = (await moto.createSecret(ROTATED, "one")).versionId;
    v2 = (await moto.putSecretValue(ROTATED, "two")).versionId;
    v3 = (await moto.putSecretValue(ROTATED, "three", ["blue"])).versionId;
  });

  test("AWSCURRENT, AWSPREVIOUS after put-secret-value, a custom stage and a version id", async () => {
    const s = await setup({
      entries: [
        { kind: "value", source: { secretId: ROTATED }, env: "CURRENT" },
        { kind: "value", source: { secretId: ROTATED, versionStage: "AWSPREVIOUS" }, env: "PREVIOUS" },
        { kind: "value", source: { secretId: ROTATED, versionStage: "blue" }, env: "BLUE" },
        { kind: "value", source: { secretId: ROTATED, versionId: v1 }, env: "FIRST" },
      ],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    const got = await sourceWithShell("dash", s.file, ["CURRENT", "PREVIOUS", "BLUE", "FIRST"]);
    assert.deepEqual(Object.fromEntries([...got].map(([k, v]) => [k, v.toString()])), {
      CURRENT: "two",
      PREVIOUS: "one",
      BLUE: "three",
      FIRST: "one",
    });
    const versions = Object.fromEntries(
      r.logs.filter((l) => l.msg === "fetched secret").map((l) => [String(l.versionId), l.versionStages]),
    );
    assert.deepEqual(versions[v2], ["AWSCURRENT"]);
    assert.deepEqual(versions[v3], ["blue"]);
    // Four distinct (secret, version) references, four calls (v1 twice: by stage and by id).
    assert.equal(r.logs.at(-1)?.apiCalls, 4);
  });

  test("the versions read are the termination message (for the rotation controller): ids only, only into the kubelet's file", async () => {
    const s = await setup({
      entries: [
        { kind: "value", source: { secretId: ROTATED }, env: "CURRENT" },
        { kind: "value", source: { secretId: ROTATED, versionStage: "AWSPREVIOUS" }, env: "PREVIOUS" },
        { kind: "value", source: { secretId: ROTATED, versionId: v1 }, env: "FIRST" },
        { kind: "value", source: { secretId: JWT, region: "us-east-1" }, env: "JWT_SECRET_KEY" },
      ],
    });
    const terminationLog = join(s.dir, "termination-log");
    await writeFile(terminationLog, "left over from a previous run, longer than the new message ".repeat(80));
    const r = await runFetchInProcess({ ...s.env, SM_INJECTOR_TERMINATION_LOG: terminationLog });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.logs.at(-1)?.versionsRecorded, true);
    const message = await readFile(terminationLog, "utf8");
    assert.ok(Buffer.byteLength(message) <= 4096);
    const decoded = decodeVersions(message);
    const jwtVersion = r.logs.find((l) => l.msg === "fetched secret" && l.secretId === JWT)?.versionId;
    const expected = [
      { secretId: ROTATED, region: "us-east-1", stage: "AWSCURRENT", versionId: v2 },
      { secretId: ROTATED, region: "us-east-1", stage: "AWSPREVIOUS", versionId: v1 },
      { secretId: JWT, region: "us-east-1", stage: "AWSCURRENT", versionId: String(jwtVersion) },
    ];
    // A pinned version id cannot move: not recorded.
    assert.deepEqual(decoded?.records, expected);
    assert.equal(decoded?.digest, versionsDigest(expected));
    assert.doesNotMatch(message, /two|one|jwt-hs512/, "no value");

    // Outside a container (no such file) nothing is created.
    const absent = join(s.dir, "no-such-termination-log");
    const again = await runFetchInProcess({ ...s.env, SM_INJECTOR_TERMINATION_LOG: absent });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.logs.at(-1)?.versionsRecorded, false);
    await assert.rejects(stat(absent), { code: "ENOENT" });
  });

  test("a stage moved by UpdateSecretVersionStage is followed", async () => {
    await moto.client.send(
      new UpdateSecretVersionStageCommand({
        SecretId: ROTATED,
        VersionStage: "blue",
        MoveToVersionId: v1,
        RemoveFromVersionId: v3,
      }),
    );
    const s = await setup({
      entries: [{ kind: "value", source: { secretId: ROTATED, versionStage: "blue" }, env: "BLUE" }],
    });
    assert.equal((await runFetchInProcess(s.env)).code, 0);
    assert.equal((await sourceWithShell("dash", s.file, ["BLUE"])).get("BLUE")?.toString(), "one");
  });

  test("a stage that does not exist: exit 1 naming the stage", async () => {
    const s = await setup({
      entries: [{ kind: "value", source: { secretId: ROTATED, versionStage: "green" }, env: "G" }],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/production\/rotated \(stage green\): ResourceNotFoundException as the access key in AWS_ACCESS_KEY_ID — no version of erp\/production\/rotated with stage green in region us-east-1/,
    );
    await assertOnlyOutput(s.outputDir, []);
  });

  test("a reference with its own region is fetched there, the others from AWS_REGION", async () => {
    await moto.createSecret("erp/production/replica", "from-eu", { region: "eu-west-1" });
    const s = await setup({
      entries: [
        { kind: "value", source: { secretId: "erp/production/replica", region: "eu-west-1" }, env: "EU" },
        { kind: "value", source: { secretId: JWT }, env: "US" },
      ],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    const got = await sourceWithShell("dash", s.file, ["EU", "US"]);
    assert.deepEqual([got.get("EU")?.toString(), got.get("US")?.toString()], ["from-eu", JWT_SECRET]);
  });

  test("a binary secret: the exact bytes in files and shell", async () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x01, 0x27, 0x0a, 0x80, 0x24, 0x7f, 0x20]);
    await moto.createSecret("erp/production/tls/keystore", bytes);
    const entries: FetchSpecInput["entries"] = [
      { kind: "value", source: { secretId: "erp/production/tls/keystore" }, env: "KEYSTORE" },
    ];
    const files = await setup({ format: "files", entries });
    assert.equal((await runFetchInProcess(files.env)).code, 0);
    assert.deepEqual(await readFile(join(files.outputDir, "KEYSTORE")), bytes);
    const shell = await setup({ entries });
    assert.equal((await runFetchInProcess(shell.env)).code, 0);
    assert.deepEqual((await sourceWithShell("bash", shell.file, ["KEYSTORE"])).get("KEYSTORE"), bytes);
  });

  test("a binary secret in the json format: refused, naming the secret and the variable", async () => {
    const s = await setup({
      format: "json",
      entries: [{ kind: "value", source: { secretId: "erp/production/tls/keystore" }, env: "KEYSTORE" }],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/production\/tls\/keystore: cannot be written in the json format: the value of KEYSTORE is not valid UTF-8/,
    );
    await assertOnlyOutput(s.outputDir, []);
  });
});

describe("failures write nothing", () => {
  test("a deleted secret (InvalidRequestException) and a missing one: exit 1, one line each", async () => {
    await moto.createSecret("erp/production/old", "x");
    await moto.client.send(new DeleteSecretCommand({ SecretId: "erp/production/old" }));
    const s = await setup({
      format: "files",
      entries: [
        ...EXAMPLE_ENTRIES,
        { kind: "value", source: { secretId: "erp/production/old" }, env: "OLD" },
        { kind: "value", source: { secretId: "erp/production/nope" }, env: "NOPE" },
      ],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    const lines = r.stderr.trimEnd().split("\n").sort();
    assert.equal(lines.length, 2, r.stderr);
    assert.match(
      lines[0] ?? "",
      /^sm-injector fetch: erp\/production\/nope: ResourceNotFoundException as .* — no secret named erp\/production\/nope in region us-east-1 \(check the name/,
    );
    assert.match(
      lines[1] ?? "",
      /^sm-injector fetch: erp\/production\/old: InvalidRequestException as .* — the secret is scheduled for deletion; restore it/,
    );
    await assertOnlyOutput(s.outputDir, []);
    assert.equal(r.logs.at(-1)?.msg, "fetch failed; nothing written");
  });

  test("an optional missing secret is skipped with a log line", async () => {
    const s = await setup({
      entries: [
        ...EXAMPLE_ENTRIES,
        { kind: "value", source: { secretId: "erp/production/nope" }, env: "NOPE", optional: true },
      ],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.logs.some(
        (l) => l.msg === "optional secret skipped" && String(l.detail).startsWith("erp/production/nope:"),
      ),
    );
    assert.equal((await sourceWithShell("dash", s.file, ["NOPE"])).has("NOPE"), false);
  });

  test("a value dotenv cannot carry: exit 1 naming the secret, the key and the variable", async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal dollar-brace reference is the point
    await moto.createSecret("erp/production/template", JSON.stringify({ tpl: "Hello ${NAME}" }));
    const s = await setup({
      format: "dotenv",
      entries: [{ kind: "value", source: { secretId: "erp/production/template" }, env: "TPL", key: "tpl" }],
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^sm-injector fetch: erp\/production\/template key "tpl": cannot be written in the dotenv format: the value of TPL contains a dollar-brace/,
    );
    assert.ok(!r.stderr.includes("Hello"));
    await assertOnlyOutput(s.outputDir, []);
  });

  test("the output directory does not exist: exit 1 with what to check", async () => {
    const s = await setup({ entries: EXAMPLE_ENTRIES });
    await rm(s.outputDir, { recursive: true });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot write to .*\/out: ENOENT — the output directory does not exist/);
  });
});

describe("the CLI as the init container runs it", () => {
  test("`node src/cli/main.ts fetch` writes the file and exits 0", async () => {
    const s = await setup({ entries: EXAMPLE_ENTRIES });
    const r = await runFetchCli(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const got = await sourceWithShell("dash", s.file, NAMES);
    assert.equal(got.get("DATABASE_URL")?.toString(), DATABASE_URL);
    assert.equal(r.logs.at(-1)?.msg, "secrets written");
  });

  test("a bad SM_INJECTOR_SPEC exits 2 and says the versions may differ", async () => {
    const s = await setup({ entries: EXAMPLE_ENTRIES });
    const cases: Array<[string | undefined, RegExp]> = [
      [undefined, /SM_INJECTOR_SPEC is not set/],
      ["{not json", /SM_INJECTOR_SPEC is not valid JSON/],
      [
        JSON.stringify({ version: 2, entries: [] }),
        /SM_INJECTOR_SPEC does not match this version's schema \(version: /,
      ],
    ];
    const cli = await runFetchCli({ ...s.env, SM_INJECTOR_SPEC: "{not json" });
    assert.equal(cli.code, 2);
    for (const [spec, message] of cases) {
      const r = await runFetchInProcess({ ...s.env, SM_INJECTOR_SPEC: spec });
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /different sm-injector versions/);
      assert.equal(r.stderr.trimEnd().split("\n").length, 1);
    }
  });

  test("no value appears in stdout, stderr or any file but the output, on success and on failure", async () => {
    const MARK = "Zq9-LEAK-CANARY";
    const values = {
      plain: `${MARK}-plain`,
      json: JSON.stringify({ A: `${MARK}-a`, B: { nested: `${MARK}-b` }, C: 7 }),
    };
    await moto.createSecret("erp/leak/plain", values.plain);
    await moto.createSecret("erp/leak/json", values.json);
    const entries: FetchSpecInput["entries"] = [
      { kind: "value", source: { secretId: "erp/leak/plain" }, env: "PLAIN" },
      { kind: "expand", source: { secretId: "erp/leak/json" } },
    ];
    const ok = await setup(
      { entries },
      { POD_NAME: "p", POD_NAMESPACE: "n", SM_INJECTOR_LOG_LEVEL: "debug" },
    );
    const good = await runFetchCli(ok.env);
    assert.equal(good.code, 0, good.stderr);
    assert.ok((await readFile(ok.file, "utf8")).includes(`${MARK}-a`), "the canary is in the output");
    // Failures after the values were fetched: a missing key, a duplicate, an encoding refusal.
    const failing = await setup(
      {
        format: "json",
        entries: [
          ...entries,
          { kind: "value", source: { secretId: "erp/leak/json" }, env: "X", key: "missing" },
          { kind: "value", source: { secretId: "erp/leak/json" }, env: "PLAIN", key: "A" },
        ],
      },
      { SM_INJECTOR_LOG_LEVEL: "debug" },
    );
    const bad = await runFetchCli(failing.env);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr.trimEnd().split("\n").length, 2, bad.stderr);
    for (const r of [good, bad]) {
      assert.ok(!r.stdout.includes(MARK), `stdout leaks: ${r.stdout}`);
      assert.ok(!r.stderr.includes(MARK), `stderr leaks: ${r.stderr}`);
    }
    // Every file under both runs' directories (home, TMPDIR, output) but the output file itself.
    const walk = async (d: string) => {
      const entries = await readdir(d, { recursive: true, withFileTypes: true });
      return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name));
    };
    const files = [...(await walk(ok.dir)), ...(await walk(failing.dir))].filter((f) => f !== ok.file);
    for (const f of files) assert.ok(!(await readFile(f)).includes(MARK), `${f} leaks a value`);
    // tsx's compile cache (TMPDIR/tsx-*) holds our source code; the bundled image has none.
    assert.deepEqual(
      files.filter((f) => !f.includes("/tsx-")),
      [],
      "nothing but the output file was written",
    );
  });
});
