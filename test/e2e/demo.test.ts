// `npm run demo` (scripts/demo/run.ts) as a user runs it: a child process with its real output, on the
// real one-node cluster it starts. It must show every step, prove the app saw the stored values, never
// print one (every demo value carries the marker SMDEMO), and leave nothing behind: not on a normal
// exit, not after Ctrl-C (SIGINT). One real node per machine: the demo waits for another to stop.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { REPO_ROOT } from "./harness/controlplane.ts";
import { isAlive, NODE_LOCK } from "./harness/real-node.ts";
import { BRIDGE } from "./harness/real-node-config.ts";

const DEMO = path.join(REPO_ROOT, "scripts", "demo", "run.ts");
const cannotRunNode =
  process.platform !== "linux" || process.getuid?.() !== 0
    ? "the demo runs a real node: Linux and root"
    : false;

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
  const { code } = await withDeadline(run.exited, 900_000, "the demo");
  const out = run.stdout();
  assert.equal(code, 0, `${run.stderr()}\n${out}`);
  return { run, out };
}

/** The node's run directory and its daemons' PIDs, as the demo printed and the lock file named. */
function nodeOf(stdout: string): { runDir: string } {
  const runDir = /control plane \(etcd, kube-apiserver\) in (\S+)/.exec(stdout)?.[1];
  assert.ok(runDir, stdout);
  return { runDir };
}

/** Nothing of the node is left: its run directory, its bridge, its lock, a process of its own. */
function assertNodeGone(stdout: string, pids: number[] = []): void {
  const { runDir } = nodeOf(stdout);
  assert.equal(existsSync(runDir), false, `${runDir} is removed`);
  assert.equal(existsSync(`/sys/class/net/${BRIDGE}`), false, "the bridge is deleted");
  assert.doesNotMatch(stdout, /left behind/);
  for (const pid of pids) assert.equal(isAlive(pid), false, `process ${pid} still runs`);
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

  test("the whole flow on the real node: every step, the app sees the stored values, none is printed, nothing is left", {
    skip: cannotRunNode,
  }, async () => {
    const before = demoScratchDirs();
    const { run, out } = await demoOfExample("examples/fastapi-env-file.yaml");
    for (let n = 1; n <= 8; n++) assert.match(out, new RegExp(`\\[${n}/8\\]`), `step ${n} is shown`);
    assert.match(out, /node Ready in [\d.]+ s/);
    assert.match(
      out,
      /webhook +deployment\/sm-injector in sm-injector +\(2 pods Ready, image localhost\/sm-injector:/,
    );
    assert.match(
      out,
      /MutatingWebhookConfiguration sm-injector from the Helm chart: .*via Service sm-injector\/sm-injector/,
    );
    assert.match(out, /erp\/production\/database +version [0-9a-f]{8}/);
    assert.match(
      out,
      /container api: image registry\.example\.com\/erp\/api:1\.4\.2 is not available offline: running the example FastAPI app image/,
    );
    // Two replicas, made by the real controllers, placed and run for real.
    assert.equal(
      [...out.matchAll(/pod\/erp-api-[a-z0-9]+-[a-z0-9]+ on sm-injector-node, IP 10\.244\.0\.\d+: Ready/g)]
        .length >= 4,
      true,
    );
    assert.match(out, /the API server called the webhook: injected ×2/);
    assert.match(out, /\+ init container sm-injector-fetch: localhost\/sm-injector:/);
    assert.match(out, /DATABASE_URL ← erp\/production\/database#DATABASE_URL/);
    assert.match(out, /IRSA with the kubelet's projected token: exit 0/);
    assert.match(out, /fetched erp\/production\/database version [0-9a-f]{8}… AWSCURRENT/);
    assert.match(out, /fetched erp\/staging\/jwt\/secret_key version/);
    assert.match(out, /wrote 2 variables to \/run\/sm-injector\/env \(dotenv\)/);
    assert.match(out, /env: mode 0400, owner 10001:10001, on a tmpfs/);
    assert.match(out, /GET http:\/\/10\.244\.0\.\d+:8000\/settings/);
    assert.match(out, /\.DATABASE_URL +•+ +✓ = erp\/production\/database#DATABASE_URL/);
    assert.match(out, /\.JWT_SECRET_KEY +•+ +✓ = erp\/staging\/jwt\/secret_key\n/);
    // Rotation: a new version, one restart by `sm-injector rotation`, a real rolling update.
    assert.match(
      out,
      /✓ restarting deployment\/erp-api: erp\/staging\/jwt\/secret_key AWSCURRENT [0-9a-f]{8}→[0-9a-f]{8} \(eu-west-1\)/,
    );
    assert.match(out, /rotation\.sm-injector\.io\/restarted-at: \d{4}-\d\d-\d\dT/);
    assert.match(out, /\.JWT_SECRET_KEY +•+ +✓ = erp\/staging\/jwt\/secret_key \(new version\)/);
    assert.match(out, /✓ every old pod replaced; the new ones read the new version/);
    assert.doesNotMatch(out, /✗/);
    assert.match(out, /✓ No secret value in the stored pods, .*the webhook's log, this demo's own output/);
    assert.match(out, /Stopped everything and removed its files/);
    assertNoValuePrinted(run);
    assertNodeGone(out);
    assert.deepEqual(demoScratchDirs(), before, "the demo's scratch directory was removed");
  });

  test("any example: an existing init container, a native sidecar, a metrics container and the command wrap on stand-ins", {
    skip: cannotRunNode,
  }, async () => {
    const { run, out } = await demoOfExample("examples/existing-init-and-sidecars.yaml");
    for (const [container, image] of [
      ["native sidecar istio-proxy", "docker.io/istio/proxyv2:1.28.1"],
      ["init container migrate", "registry.example.com/shop/orders:2.7.0"],
      ["container orders", "registry.example.com/shop/orders:2.7.0"],
      ["container metrics", "quay.io/prometheus/statsd-exporter:v0.28.0"],
    ] as Array<[string, string]>)
      assert.match(
        out,
        new RegExp(
          `${container}: image ${image.replace(/[.]/g, "\\.")} is not available offline: running the stand-in, which prints its argv`,
        ),
      );
    assert.match(
      out,
      /init containers, in order: istio-proxy \(native sidecar\), migrate, sm-injector-fetch/,
    );
    assert.match(out, /init container migrate: exit 0/);
    assert.match(
      out,
      /stand-in for registry\.example\.com\/shop\/orders:2\.7\.0: argv: \[node\] \[migrate\.js\] \[--to\] \[latest\]/,
    );
    // The sidecar keeps running next to the app; the app and metrics run through the command wrap.
    assert.match(
      out,
      /native sidecar istio-proxy: running\n.*stand-in for docker\.io\/istio\/proxyv2:1\.28\.1: argv: \[\/usr\/local\/bin\/pilot-agent\] \[proxy\]/,
    );
    assert.match(
      out,
      /container orders: running through the command wrap \(\/bin\/sh sources the env file, then exec\)\n.*argv: \[node\] \[server\.js\] \[--port\] \[8080\]/,
    );
    assert.match(out, /container metrics: running through the command wrap/);
    assert.match(out, /✓ restarting deployment\/orders: erp\/staging\/jwt\/secret_key AWSCURRENT/);
    assert.match(out, /✓ every old pod replaced/);
    assert.doesNotMatch(out, /✗/);
    assertNoValuePrinted(run);
    assertNodeGone(out);
  });

  test("the command-wrap example: a ServiceAccount the example lacks is made for IRSA; the wrapped stand-in runs", {
    skip: cannotRunNode,
  }, async () => {
    const { run, out } = await demoOfExample("examples/command-wrap.yaml");
    assert.match(out, /serviceaccount\/erp-gateway created .*eksctl create iamserviceaccount/);
    assert.match(
      out,
      /container gateway: running through the command wrap .*\n.*stand-in for registry\.example\.com\/erp\/gateway:1\.4\.2: argv: \[node\] \[server\.js\] \[--port\] \[8080\]/,
    );
    assert.match(out, /wrote 3 variables to \/run\/sm-injector\/env/);
    assert.doesNotMatch(out, /✗/);
    assert.match(
      out,
      /\[8\/8\] Rotation\n.*skipped: the example does not annotate sm-injector.io\/restart-on-rotation/,
    );
    assertNoValuePrinted(run);
  });

  test("the RDS example: the composed DATABASE_URL, and the rotation controller restarts for the templated secret", {
    skip: cannotRunNode,
  }, async () => {
    const { run, out } = await demoOfExample("examples/fastapi-rds-database-url.yaml");
    assert.match(
      out,
      /DATABASE_URL ← template: postgresql\+asyncpg:\/\/\$\{erp\/production\/rds#username\|urlencode\}/,
    );
    assert.match(out, /\.DATABASE_URL +•+ +✓ = template DATABASE_URL ← erp\/production\/rds\n/);
    assert.match(out, /✓ restarting deployment\/erp-api: erp\/production\/rds AWSCURRENT/);
    assert.match(out, /\.DATABASE_URL +•+ +✓ = template DATABASE_URL ← erp\/production\/rds \(new version\)/);
    assert.doesNotMatch(out, /✗/);
    assertNoValuePrinted(run);
  });

  test("Ctrl-C (SIGINT) while everything runs: it stops the node's processes and removes its files", {
    skip: cannotRunNode,
  }, async () => {
    const before = demoScratchDirs();
    const run = startDemo(["--keep"]);
    // Wait until the node, moto and the webhook are up (step 3 has started).
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
      600_000,
      "the demo's start-up",
    );
    const lock = JSON.parse(readFileSync(NODE_LOCK, "utf8")) as {
      pid: number;
      processes: Record<string, number>;
    };
    assert.equal(lock.pid, run.child.pid, "the demo holds the node");
    const pids = Object.values(lock.processes);
    assert.ok(pids.length >= 6 && pids.every(isAlive), JSON.stringify(lock));
    run.child.kill("SIGINT");
    const { code, signal } = await withDeadline(run.exited, 60_000, "stopping after SIGINT");
    assert.equal(code, 130, `exit ${code} ${signal}\n${run.stderr()}`);
    assert.match(run.stdout(), /SIGINT: stopping/);
    assertNodeGone(run.stdout(), pids);
    assert.equal(existsSync(NODE_LOCK), false, "the node's lock is released");
    assert.deepEqual(demoScratchDirs(), before, "the demo's scratch directory was removed");
    assertNoValuePrinted(run);
  });
});
