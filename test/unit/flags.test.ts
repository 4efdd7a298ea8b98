// The three commands' flags come from one kind of table (src/cli/flags.ts): each flag once, with its
// variable, type, default and help. What a user sees: a bad value is named by its flag (and the
// variable it could also come from), --help lists every flag with its default, and flags win over
// variables.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { z } from "zod";
import { flag, flagHelp, parseFlags } from "../../src/cli/flags.ts";
import { INJECT_FLAGS } from "../../src/cli/inject.ts";
import { loadRotationConfig, ROTATION_FLAGS } from "../../src/cli/rotation.ts";
import { loadWebhookConfig, WEBHOOK_FLAGS } from "../../src/webhook/config.ts";
import { generateCA, generateCert } from "../e2e/harness/certs.ts";

const root = join(import.meta.dirname, "..", "..");

/** The CLI from source (no bundle needed), as a user runs it. */
function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(root, "src", "cli", "main.ts"), ...args], {
    encoding: "utf8",
    cwd: root,
    env: { PATH: process.env.PATH ?? "", ...env },
    timeout: 30_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe("a bad value names its flag", () => {
  test("inject --run-as-user abc says --run-as-user, not the config field", () => {
    const r = cli(["inject", "-f", "examples/fastapi-env-file.yaml", "--run-as-user", "abc"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--run-as-user: must be a whole number \(got "abc"\)/);
    assert.doesNotMatch(r.stderr, /defaultUid/);
  });

  test("the webhook names flag and variable, for a value from either", () => {
    const base = ["--image", "x", "--tls-cert-file", "c", "--tls-key-file", "k"];
    assert.throws(
      () => loadWebhookConfig([...base, "--run-as-user", "abc"], {}),
      /--run-as-user \(SM_INJECTOR_RUN_AS_USER\): must be a whole number \(got "abc"\)/,
    );
    assert.throws(
      () => loadWebhookConfig(base, { SM_INJECTOR_MAX_SECRETS: "0" }),
      /--max-secrets \(SM_INJECTOR_MAX_SECRETS\): must be at least 1 \(got "0"\)/,
    );
    assert.throws(
      () => loadWebhookConfig([...base, "--init-cpu-limit", "lots"], {}),
      /--init-cpu-limit \(SM_INJECTOR_INIT_CPU_LIMIT\): must be a Kubernetes quantity/,
    );
    assert.throws(
      () => loadWebhookConfig([...base, "--shutdown-delay-seconds", "301"], {}),
      /--shutdown-delay-seconds \(SM_INJECTOR_SHUTDOWN_DELAY_SECONDS\): must be at most 300/,
    );
  });

  test("rotation too, every problem at once", () => {
    assert.throws(
      () => loadRotationConfig(["--concurrency", "x", "--once=maybe"], {}),
      (e: Error) =>
        /--concurrency \(SM_INJECTOR_CONCURRENCY\): must be a whole number/.test(e.message) &&
        /--once \(SM_INJECTOR_ONCE\): must be true or false \(got "maybe"\)/.test(e.message),
    );
  });
});

describe("where a value comes from", () => {
  const table = {
    "max-things": flag({ env: "T_MAX", input: "int", schema: z.number().int().min(1).default(5), help: "h" }),
    verbose: flag({ env: "T_VERBOSE", input: "bool", schema: z.boolean().default(false), help: "h" }),
    name: flag({ input: "text", schema: z.string().optional(), help: "h" }),
  };

  test("flag over variable over default; an empty variable is unset", () => {
    assert.deepEqual(parseFlags(table, [], {}).values, { maxThings: 5, verbose: false, name: undefined });
    assert.equal(parseFlags(table, [], { T_MAX: "7" }).values.maxThings, 7);
    assert.equal(parseFlags(table, ["--max-things", "9"], { T_MAX: "7" }).values.maxThings, 9);
    assert.equal(parseFlags(table, [], { T_MAX: "" }).values.maxThings, 5);
  });

  test("a switch alone is true; --switch=false and --switch false are false", () => {
    assert.equal(parseFlags(table, ["--verbose"]).values.verbose, true);
    assert.equal(parseFlags(table, ["--verbose=false"]).values.verbose, false);
    assert.equal(parseFlags(table, ["--verbose", "false", "--name", "n"]).values.verbose, false);
    assert.equal(parseFlags(table, ["--verbose", "--name", "n"]).values.name, "n");
  });

  test("an unknown flag is the only problem reported", () => {
    assert.deepEqual(parseFlags(table, ["--max-thing", "1"]).problems, ["Unknown option '--max-thing'"]);
  });

  test("inject reads no variables: a preview depends on its command line only", () => {
    const r = parseFlags(INJECT_FLAGS, ["-f", "x.yaml"], { SM_INJECTOR_DEFAULT_REGION: "eu-west-1" });
    assert.deepEqual(r.problems, []);
    assert.equal(r.values.defaultRegion, undefined);
    assert.equal(r.values.image.startsWith("ghcr.io/sm-injector/sm-injector:"), true);
  });
});

describe("help is generated from the table", () => {
  for (const [command, table] of [
    ["webhook", WEBHOOK_FLAGS],
    ["rotation", ROTATION_FLAGS],
    ["inject", INJECT_FLAGS],
  ] as const) {
    test(`${command} --help lists every flag, its variable and its default`, () => {
      const r = cli([command, "--help"]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(flagHelp(table, { env: command !== "inject" })), r.stdout);
      for (const [name, spec] of Object.entries(table)) {
        const line = r.stdout.split("\n").find((l) => l.includes(`--${name} `));
        assert.ok(line, `--${name} missing from ${command} --help`);
        if (command !== "inject" && spec.env) assert.ok(line.includes(spec.env), line);
        const d = spec.schema.safeParse(undefined);
        if (d.success && d.data !== undefined && !Array.isArray(d.data))
          assert.ok(line.includes(`(default ${String(d.data)})`), line);
      }
    });
  }

  test("every webhook and rotation flag has a variable named after it", () => {
    for (const table of [WEBHOOK_FLAGS, ROTATION_FLAGS])
      for (const [name, spec] of Object.entries(table))
        assert.equal(spec.env, `SM_INJECTOR_${name.replaceAll("-", "_").toUpperCase()}`, name);
  });
});

describe("TLS start-up errors name the flag to fix", () => {
  test("a certificate and a key that do not match: both flags named", async () => {
    const dir = await mkdtemp(join(tmpdir(), "flags-tls-"));
    try {
      const ca = await generateCA(dir, "ca");
      const a = await generateCert(dir, ca, { cn: "a", sans: ["localhost"] });
      const b = await generateCert(dir, ca, { cn: "b", sans: ["localhost"] });
      const r = cli(["webhook", "--image", "x", "--tls-cert-file", a.certPath, "--tls-key-file", b.keyPath]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`--tls-cert-file ${a.certPath}`));
      assert.match(r.stderr, new RegExp(`--tls-key-file ${b.keyPath}`));
      assert.match(r.stderr, /do not form a usable pair/);
      const c = cli([
        "webhook",
        "--image",
        "x",
        "--tls-cert-file",
        a.certPath,
        "--tls-key-file",
        a.keyPath,
        "--client-ca-file",
        a.keyPath,
      ]);
      assert.equal(c.code, 1, c.stderr);
      assert.match(c.stderr, new RegExp(`--client-ca-file ${a.keyPath}\\) is not a PEM CA certificate`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
