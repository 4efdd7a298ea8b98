// What ships besides the code: the Dockerfile (checked statically - there is no Docker engine here),
// the bundle running with no node_modules at all (as in the image), the shell scripts, and the kind
// setup (which only runs on machines with Docker: scripts/kind-e2e.sh).
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { parse } from "yaml";
import { PINNED_NODE_MAJOR } from "../../scripts/pinned-node.mjs";
import { generateCA, generateCert } from "../e2e/harness/certs.ts";
import { getFreePort } from "../e2e/harness/ports.ts";
import { type ManagedProcess, spawnManaged, waitForHttp } from "../e2e/harness/process.ts";
import { REPO_ROOT, renderChart } from "../helpers/tools.ts";

const execFileAsync = promisify(execFile);
const read = (p: string) => readFile(path.join(REPO_ROOT, p), "utf8");

interface Instruction {
  cmd: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/**
 * A small Dockerfile parser: comments, line continuations, one instruction per logical line; the
 * defaults of the ARGs declared before the first FROM are substituted into FROM lines, as Docker does.
 */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(current + line);
    current = "";
  }
  const stages: Stage[] = [];
  const globalArgs = new Map<string, string>();
  const expand = (word: string) =>
    word.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
      const value = globalArgs.get((a ?? b) as string);
      assert.ok(value !== undefined, `$${a ?? b} is used, but no ARG before the first FROM sets it`);
      return value;
    });
  for (const l of logical) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    assert.ok(m, `unparsable Dockerfile line: ${l}`);
    const cmd = (m[1] as string).toUpperCase();
    const args = (m[2] as string).trim();
    if (cmd === "FROM") {
      const parts = args
        .split(/\s+/)
        .filter((p) => !p.startsWith("--"))
        .map(expand);
      const as = parts.findIndex((p) => p.toUpperCase() === "AS");
      stages.push({ from: parts[0] as string, ...(as !== -1 && { name: parts[as + 1] }), instructions: [] });
      continue;
    }
    if (cmd === "ARG" && stages.length === 0) {
      const m = /^(\w+)(?:=(\S*))?$/.exec(args);
      assert.ok(m, `unparsable ARG: ${args}`);
      // A default may use the ARGs declared before it (RUNTIME_IMAGE uses NODE_MAJOR).
      if (m[2] !== undefined) globalArgs.set(m[1] as string, expand(m[2]));
      continue;
    }
    const stage = stages.at(-1);
    assert.ok(stage, `${cmd} before the first FROM`);
    stage.instructions.push({ cmd, args });
  }
  return stages;
}

describe("Dockerfile", async () => {
  const stages = parseDockerfile(await read("Dockerfile"));
  const build = stages[0] as Stage;
  const named = (name: string) => {
    const s = stages.find((x) => x.name === name);
    assert.ok(s, `no stage ${name}`);
    return s;
  };
  // The runtime, and the two ways to start it: the default target (the last stage) and
  // `--target entry-snapshot`.
  const runtime = named("runtime");
  const entryPlain = named("entry-plain");
  const entrySnapshot = named("entry-snapshot");
  const snapshotCheck = named("snapshot-check");
  const of = (s: Stage, cmd: string) => s.instructions.filter((i) => i.cmd === cmd).map((i) => i.args);
  const node = runtime.from.includes("distroless") ? "/nodejs/bin/node" : "node";
  const SNAPSHOT = "/app/fetch.snapshot.blob";

  test("multi-stage: a build stage on the pinned Node major runs npm ci and npm run build", () => {
    assert.ok(stages.length >= 2, "at least a build and a runtime stage");
    const major = Number(/^node:(\d+)/.exec(build.from)?.[1]);
    assert.equal(major, PINNED_NODE_MAJOR, `build stage on node:${PINNED_NODE_MAJOR} (got ${build.from})`);
    const runs = of(build, "RUN").join("\n");
    assert.match(runs, /\bnpm ci\b/);
    assert.match(runs, /\bnpm run build\b/);
  });

  test("runtime: a minimal image (distroless or alpine) of the pinned Node major, no RUN (no shell needed)", () => {
    const distroless = /^gcr\.io\/distroless\/nodejs(\d+)-debian\d+(:nonroot)?(@sha256:[a-f0-9]{64})?$/.exec(
      runtime.from,
    );
    const alpine = /^node:(\d+)(\.[\d.]+)?-alpine[\d.]*(@sha256:[a-f0-9]{64})?$/.exec(runtime.from);
    assert.ok(distroless || alpine, `runtime base ${runtime.from}`);
    assert.equal(
      Number((distroless ?? alpine)?.[1]),
      PINNED_NODE_MAJOR,
      `the pinned Node major (scripts/versions.env): ${runtime.from}`,
    );
    assert.deepEqual(of(runtime, "RUN"), [], "the runtime stage runs nothing (distroless has no shell)");
    assert.deepEqual(of(entryPlain, "RUN"), []);
    assert.deepEqual(of(entrySnapshot, "RUN"), []);
    // The one RUN, in exec form, in a stage of its own on the runtime: the runtime's node started from
    // the blob, so that a blob of another node build (exit 14) fails the build, not every pod start.
    assert.equal(snapshotCheck.from, "runtime");
    assert.deepEqual(
      of(snapshotCheck, "RUN").map((r) => JSON.parse(r)),
      [[node, "--snapshot-blob", SNAPSHOT, "/app/sm-injector.mjs", "version"]],
    );
  });

  test("entry stages: the default (last) starts plainly; entry-snapshot from the blob it copies; both on the runtime", () => {
    assert.equal(stages.at(-1), entryPlain, "the default target is the plain start");
    for (const s of [entryPlain, entrySnapshot]) {
      assert.equal(s.from, "runtime");
      assert.deepEqual(of(s, "CMD"), ['["help"]'], `${s.name}: CMD after its ENTRYPOINT (which resets it)`);
    }
    assert.deepEqual(JSON.parse(of(entryPlain, "ENTRYPOINT").at(-1) ?? "null"), [
      node,
      "/app/sm-injector.mjs",
    ]);
    assert.deepEqual(JSON.parse(of(entrySnapshot, "ENTRYPOINT").at(-1) ?? "null"), [
      node,
      "--snapshot-blob",
      SNAPSHOT,
      "/app/sm-injector.mjs",
    ]);
    // The blob comes from the checked stage (which makes the check run first).
    assert.deepEqual(of(snapshotCheck, "COPY"), [`--from=${build.name} /src/dist/fetch.snapshot.blob /app/`]);
    assert.deepEqual(of(entrySnapshot, "COPY"), ["--from=snapshot-check /app/fetch.snapshot.blob /app/"]);
    assert.deepEqual(of(entryPlain, "COPY"), []);
  });

  test("runtime: only the bundle (dist/: entry + chunks, no blob) is copied (no node_modules), non-root 65532", () => {
    const copies = of(runtime, "COPY");
    assert.ok(copies.length > 0);
    for (const c of copies) {
      assert.match(c, new RegExp(`^--from=${build.name}\\s+/src/dist/(\\S+)\\s+/app/\\1?$`), c);
      assert.doesNotMatch(c, /node_modules|\.blob/);
    }
    assert.deepEqual(of(runtime, "ADD"), []);
    const user = of(runtime, "USER").at(-1);
    assert.match(user ?? "", /^65532(:65532)?$/, "numeric non-root USER (kubelet can verify runAsNonRoot)");
    assert.deepEqual(of(runtime, "ENTRYPOINT"), [], "each entry stage sets its own");
    // The chart's `helm test` pod runs `node -e`: node must be on PATH in the image.
    if (runtime.from.includes("distroless")) {
      assert.match(of(runtime, "ENV").join(" "), /PATH=\/nodejs\/bin:/);
    }
  });

  test("the chart's webhook starts plainly whatever the image's entrypoint: command + args starting with the subcommand", async () => {
    const objs = await renderChart();
    const dep = objs.find((o) => o.kind === "Deployment");
    const plain = JSON.parse(of(entryPlain, "ENTRYPOINT").at(-1) ?? "null");
    // The plain start, not the snapshot; with the chart's V8 flags between node and the script.
    const command: string[] = dep?.spec.template.spec.containers[0].command;
    assert.deepEqual(
      command.filter((a) => !a.startsWith("--")),
      plain,
      "the plain start, not the snapshot",
    );
    assert.deepEqual(command.slice(1, -1), ["--no-concurrent-recompilation"]);
    assert.equal(dep?.spec.template.spec.containers[0].args[0], "webhook");
    const testPod = objs.find((o) => o.kind === "Pod");
    assert.deepEqual(testPod?.spec.containers[0].command, ["node", "-e"]);
  });

  test(".dockerignore is an allow-list of exactly what the build stage copies", async () => {
    const patterns = (await read(".dockerignore"))
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    assert.equal(patterns[0], "*", "everything is excluded first");
    const allowed = patterns.slice(1).map((p) => {
      assert.ok(p.startsWith("!"), `only re-includes after "*": ${p}`);
      return p.slice(1).replace(/\/$/, "");
    });
    const sources = of(build, "COPY")
      .filter((c) => !c.startsWith("--from"))
      .flatMap((c) => c.split(/\s+/).slice(0, -1))
      .map((s) => s.replace(/^\.\//, "").replace(/\/$/, ""));
    assert.deepEqual([...allowed].sort(), [...new Set(sources)].sort());
    for (const never of ["node_modules", "dist", ".git", "test"]) assert.ok(!allowed.includes(never), never);
    // What scripts/build.mjs bundles: src/ (which imports ../package.json for the version).
    assert.match(await read("src/version.ts"), /\.\.\/package\.json/);
  });
});

describe("the bundle runs with no node_modules (as in the image)", () => {
  const bundle = process.env.SM_INJECTOR_BUNDLE ?? path.join(REPO_ROOT, "dist", "sm-injector.mjs");
  let dir = "";
  let cli = "";
  let webhook: ManagedProcess | undefined;
  const version = JSON.parse(
    spawnSync("cat", [path.join(REPO_ROOT, "package.json")]).stdout.toString(),
  ).version;

  before(async () => {
    if (!existsSync(bundle))
      throw new Error(`${bundle} is missing; run \`npm run build\` first (npm test does)`);
    dir = await mkdtemp(path.join(tmpdir(), "sm-injector-image-"));
    await mkdir(path.join(dir, "app"));
    cli = path.join(dir, "app", "sm-injector.mjs");
    // The bundle is the entry file plus its chunks/ directory, copied as the image does.
    await cp(path.dirname(bundle), path.join(dir, "app"), { recursive: true });
    for (let d = path.dirname(cli); ; d = path.dirname(d)) {
      assert.ok(
        !existsSync(path.join(d, "node_modules")),
        `${d}/node_modules would hide a missing dependency`,
      );
      if (d === path.dirname(d)) break;
    }
  });
  after(async () => {
    await webhook?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [cli, ...args], {
      cwd: path.dirname(cli),
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "production", ...env },
      encoding: "utf8",
      timeout: 30_000,
    });
  const noMissingModule = (stderr: string) =>
    assert.doesNotMatch(stderr, /Cannot find (module|package)|ERR_MODULE_NOT_FOUND/, stderr);

  test("--version, version, help", () => {
    for (const args of [["--version"], ["version"]]) {
      const r = run(args);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), version);
    }
    assert.equal(run(["help"]).status, 0);
  });

  test("fetch --help and webhook --help", () => {
    const f = run(["fetch", "--help"]);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /sm-injector fetch/);
    const w = run(["webhook", "--help"]);
    assert.equal(w.status, 0, w.stderr);
    assert.match(w.stdout, /--tls-cert-file/);
  });

  test("fetch loads the AWS SDK: a bad spec fails cleanly, not with a missing module", () => {
    const r = run(["fetch"], { SM_INJECTOR_SPEC: "{not json" });
    assert.notEqual(r.status, 0);
    noMissingModule(r.stderr);
  });

  test("webhook serves /readyz, /metrics and /mutate over TLS (fastify, prom-client, Kubernetes client)", async () => {
    const ca = await generateCA(dir, "ca");
    const serving = await generateCert(dir, ca, { cn: "localhost", sans: ["127.0.0.1", "localhost"] });
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    );
    const port = await getFreePort();
    webhook = spawnManaged(
      "webhook",
      process.execPath,
      [
        cli,
        "webhook",
        "--host=127.0.0.1",
        `--port=${port}`,
        `--tls-cert-file=${serving.certPath}`,
        `--tls-key-file=${serving.keyPath}`,
        `--kubeconfig=${kubeconfig}`,
        "--image=registry.example.com/sm-injector:test",
        "--shutdown-delay-seconds=0",
      ],
      {
        logPath: path.join(dir, "webhook.log"),
        cwd: path.dirname(cli),
        env: { PATH: process.env.PATH ?? "" },
      },
    );
    const url = `https://127.0.0.1:${port}`;
    await waitForHttp(`${url}/readyz`, { ca: ca.certPem, process: webhook, timeoutMs: 20_000 });
    const request = (method: string, p: string, body?: object) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request(
          `${url}${p}`,
          { method, ca: ca.certPem, headers: body ? { "content-type": "application/json" } : {} },
          (res) => {
            let data = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => {
              data += c;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
          },
        );
        req.on("error", reject);
        req.end(body ? JSON.stringify(body) : undefined);
      });
    assert.equal((await request("GET", "/healthz")).status, 200);
    const metrics = await request("GET", "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /# TYPE /);
    const review = await request("POST", "/mutate", {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: "u1",
        kind: { group: "", version: "v1", kind: "Pod" },
        namespace: "default",
        operation: "CREATE",
        object: { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "busybox" }] } },
      },
    });
    assert.equal(review.status, 200, review.body);
    assert.deepEqual(JSON.parse(review.body).response, { uid: "u1", allowed: true });
    await webhook.stop();
    noMissingModule(webhook.logTail(200));
  });
});

describe("shell scripts", () => {
  const scripts = [
    "scripts/render-manifests.sh",
    "scripts/gen-webhook-certs.sh",
    "scripts/kind-e2e.sh",
    "scripts/install-node.sh",
    "scripts/build-images.sh",
    "images/rootfs/extract-hook.sh",
    "images/standin/standin.sh",
    ".ci/run",
  ];
  for (const s of scripts) {
    test(`${s}: bash -n`, async () => {
      await execFileAsync("bash", ["-n", path.join(REPO_ROOT, s)]);
    });
  }
  const shellcheck = spawnSync("shellcheck", ["--version"]).status === 0;
  test("shellcheck-clean", {
    skip: shellcheck ? false : "shellcheck is not installed (apt-get install shellcheck)",
  }, async () => {
    // -x: follow the `# shellcheck source=` files (scripts/versions.env) too.
    const r = spawnSync("shellcheck", ["-x", ...scripts], { cwd: REPO_ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});

describe("kind end-to-end setup (runs only where Docker is: npm run test:kind)", () => {
  test("kind-config.yaml: a control plane and two workers for the two webhook replicas", async () => {
    const config = parse(await read("kind-config.yaml"));
    assert.equal(config.kind, "Cluster");
    assert.equal(config.apiVersion, "kind.x-k8s.io/v1alpha4");
    const roles = config.nodes.map((n: { role: string }) => n.role);
    assert.equal(roles.filter((r: string) => r === "control-plane").length, 1);
    assert.ok(roles.filter((r: string) => r === "worker").length >= 2);
  });
  // The script itself is run, with stand-in tools, by kind-e2e-dryrun.test.ts.
});
