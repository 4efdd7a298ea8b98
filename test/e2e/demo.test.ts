// `npm run demo` (scripts/demo/run.ts) as a user runs it: a child process with its real output. It must show
// every step, prove the app saw the stored values, never print one (every demo value carries the
// marker SMDEMO), and leave nothing behind: not on a normal exit, not after Ctrl-C (SIGINT).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { REPO_ROOT } from "./harness/controlplane.ts";
import { podRunnerUnsupportedReason } from "./harness/pod-runner.ts";

const DEMO = path.join(REPO_ROOT, "scripts", "demo", "run.ts");
const canRunPods = podRunnerUnsupportedReason() === undefined;

interface DemoRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDemo(args: string[] = []): DemoRun {
  const child = spawn(process.execPath, ["--import", "tsx", DEMO, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (c: string) => {
    out += c;
  });
  child.stderr?.setEncoding("utf8").on("data", (c: string) => {
    err += c;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** `npm run demo -- --example FILE` to its end: it must exit 0. */
async function demoOfExample(file: string): Promise<{ run: DemoRun; out: string }> {
  const run = startDemo(["--example", file]);
  const { code } = await withDeadline(run.exited, 300_000, "the demo");
  const out = run.stdout();
  assert.equal(code, 0, `${run.stderr()}\n${out}`);
  return { run, out };
}

/** The loopback ports the demo printed in step 2 (kube-apiserver, etcd, moto, webhook). */
function printedPorts(stdout: string): number[] {
  const ports = [...stdout.matchAll(/https?:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  return [...new Set(ports)];
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function demoScratchDirs(): string[] {
  try {
    return readdirSync("/dev/shm").filter((d) => d.startsWith("sm-injector-demo-"));
  } catch {
    return [];
  }
}

function assertNoValuePrinted(run: DemoRun): void {
  assert.doesNotMatch(run.stdout(), /SMDEMO/, "a secret value was printed on stdout");
  assert.doesNotMatch(run.stderr(), /SMDEMO/, "a secret value was printed on stderr");
}

describe("npm run demo", () => {
  test("--help prints the usage", async () => {
    const run = startDemo(["--help"]);
    const { code } = await withDeadline(run.exited, 30_000, "demo --help");
    assert.equal(code, 0, run.stderr());
    assert.match(run.stdout(), /Usage: npm run demo/);
    assert.match(run.stdout(), /--example FILE/);
  });

  test("an example that does not exist is refused by name, before anything starts", async () => {
    const run = startDemo(["--example", "examples/nope.yaml"]);
    const { code } = await withDeadline(run.exited, 30_000, "demo");
    assert.equal(code, 1);
    assert.match(run.stderr(), /examples\/nope\.yaml does not exist/);
    assert.doesNotMatch(run.stdout(), /\[2\/8\]/);
  });

  test("the whole flow: every step, the app sees the stored values, none is printed, nothing is left", async () => {
    const before = demoScratchDirs();
    const run = startDemo();
    const { code } = await withDeadline(run.exited, 300_000, "the demo");
    const out = run.stdout();
    assert.equal(code, 0, `${run.stderr()}\n${out}`);
    for (let n = 1; n <= 8; n++) assert.match(out, new RegExp(`\\[${n}/8\\]`), `step ${n} is shown`);
    assert.match(out, /MutatingWebhookConfiguration sm-injector from the Helm chart/);
    assert.match(out, /erp\/production\/database +version [0-9a-f]{8}/);
    assert.match(out, /the API server called the webhook: injected/);
    assert.match(out, /\+ init container sm-injector-fetch/);
    assert.match(out, /DATABASE_URL ← erp\/production\/database#DATABASE_URL/);
    if (canRunPods) {
      assert.match(out, /fetched erp\/production\/database version [0-9a-f]{8}… AWSCURRENT/);
      assert.match(out, /fetched erp\/staging\/jwt\/secret_key version/);
      assert.match(out, /wrote 2 variables to \/run\/sm-injector\/env \(dotenv\)/);
      assert.match(out, /env: mode 0400, owner 10001:10001/);
      assert.match(out, /\.database_url +•+ +\d+ chars +✓ = erp\/production\/database#DATABASE_URL/);
      assert.match(out, /\.jwt_secret_key +•+ +\d+ chars +✓ = erp\/staging\/jwt\/secret_key/);
      // Rotation: a new version, one restart by `sm-injector rotation`, the new pod sees the new value.
      assert.match(
        out,
        /✓ restarting deployment\/erp-api: erp\/staging\/jwt\/secret_key AWSCURRENT [0-9a-f]{8}→[0-9a-f]{8} \(eu-west-1\)/,
      );
      assert.match(out, /rotation\.sm-injector\.io\/restarted-at: \d{4}-\d\d-\d\dT/);
      assert.match(out, /\.jwt_secret_key +•+ +\d+ chars +✓ = erp\/staging\/jwt\/secret_key \(new version\)/);
      assert.doesNotMatch(out, /✗/);
      assert.match(
        out,
        /✓ No secret value in the stored pod, the init container's output, the rotation controller's output, the new pod, its init container's output, the webhook's log, this demo's own output/,
      );
    } else {
      assert.match(out, /skipped: /);
    }
    assert.match(out, /Stopped everything and removed its files/);
    assertNoValuePrinted(run);
    const ports = printedPorts(out);
    assert.ok(ports.length >= 4, `the demo printed its endpoints: ${ports.join(", ")}`);
    for (const port of ports) assert.equal(await isListening(port), false, `port ${port} is still open`);
    assert.deepEqual(demoScratchDirs(), before, "the demo's scratch directory was removed");
  });

  test("the command-wrap example: the wrapped command sees every variable in its environment", {
    skip: canRunPods ? false : podRunnerUnsupportedReason(),
  }, async () => {
    const { run, out } = await demoOfExample("examples/command-wrap.yaml");
    assert.match(out, /serviceaccount\/erp-gateway created .*not in the example/);
    assert.match(out, /ran `node server\.js --port 8080` as uid 1000 through the command wrap/);
    for (const [name, from] of <Array<[string, string]>>[
      ["JWT_SECRET_KEY", "erp/staging/jwt/secret_key"],
      ["S3_ACCESS_KEY_ID", "erp/production/aws/s3_app_user_credentials#access_key_id"],
      ["S3_SECRET_ACCESS_KEY", "erp/production/aws/s3_app_user_credentials#secret_access_key"],
    ])
      assert.match(out, new RegExp(`\\$${name} +•+ +\\d+ chars +✓ = ${from.replace(/[/#]/g, "\\$&")}`));
    assert.doesNotMatch(out, /✗/);
    assert.match(
      out,
      /\[8\/8\] Rotation\n.*skipped: the example does not annotate sm-injector.io\/restart-on-rotation/,
    );
    assertNoValuePrinted(run);
  });

  test("the RDS example: the composed DATABASE_URL, and the rotation controller restarts for the templated secret", {
    skip: canRunPods ? false : podRunnerUnsupportedReason(),
  }, async () => {
    const { run, out } = await demoOfExample("examples/fastapi-rds-database-url.yaml");
    assert.match(
      out,
      /DATABASE_URL ← template: postgresql\+asyncpg:\/\/\$\{erp\/production\/rds#username\|urlencode\}/,
    );
    assert.match(out, /\.database_url +•+ +\d+ chars +✓ = template DATABASE_URL ← erp\/production\/rds\n/);
    assert.match(out, /✓ restarting deployment\/erp-api: erp\/production\/rds AWSCURRENT/);
    assert.match(
      out,
      /\.database_url +•+ +\d+ chars +✓ = template DATABASE_URL ← erp\/production\/rds \(new version\)/,
    );
    assert.doesNotMatch(out, /✗/);
    assertNoValuePrinted(run);
  });

  test("Ctrl-C (SIGINT) while everything runs: it stops the processes and removes its files", async () => {
    const before = demoScratchDirs();
    const run = startDemo(["--keep"]);
    // Wait until the control plane, moto and the webhook are up (step 3 has started).
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        const check = setInterval(() => {
          if (/\[3\/8\]/.test(run.stdout())) {
            clearInterval(check);
            resolve();
          }
        }, 50);
        run.exited.then(() => {
          clearInterval(check);
          reject(new Error(`the demo exited early:\n${run.stdout()}\n${run.stderr()}`));
        });
      }),
      300_000,
      "the demo's start-up",
    );
    const ports = printedPorts(run.stdout());
    assert.ok(ports.length >= 4, run.stdout());
    for (const port of ports)
      assert.equal(await isListening(port), true, `port ${port} is open while it runs`);
    run.child.kill("SIGINT");
    const { code, signal } = await withDeadline(run.exited, 20_000, "stopping after SIGINT");
    assert.equal(code, 130, `exit ${code} ${signal}\n${run.stderr()}`);
    assert.match(run.stdout(), /SIGINT: stopping/);
    for (const port of ports) assert.equal(await isListening(port), false, `port ${port} is still open`);
    assert.deepEqual(demoScratchDirs(), before, "the demo's scratch directory was removed");
    assertNoValuePrinted(run);
  });
});
