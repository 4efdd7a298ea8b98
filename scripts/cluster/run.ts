/**
 * `npm run cluster -- up|down|status`: the real one-node cluster of the e2e tests
 * (test/e2e/harness/real-node.ts) as a local cluster to work with.
 *
 *  up      starts it in the background (a `serve` process owns it), waits until the node is Ready,
 *          prints the KUBECONFIG; Ctrl-C while it starts stops it again. --foreground: stay attached
 *          until Ctrl-C, then stop.
 *  down    stops it: the owner deletes every pod (the kubelet tears the sandboxes down), stops the
 *          daemons by PID and cleans the host (mounts, bridge, pod cgroups); if the owner died, down
 *          cleans up after it.
 *  status  what runs, the node's condition, and what is left on the host.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { REPO_ROOT } from "../../test/e2e/harness/controlplane.ts";
import { leaveSignalsToCaller } from "../../test/e2e/harness/process.ts";
import {
  isAlive,
  NODE_LOCK,
  type NodeLock,
  readNodeLock,
  startRealNode,
} from "../../test/e2e/harness/real-node.ts";
import { NODE_NAME } from "../../test/e2e/harness/real-node-config.ts";
import {
  cleanHost,
  describeLeftovers,
  isClean,
  leftovers,
  mountsUnder,
} from "../../test/e2e/harness/real-node-host.ts";
import { refuseUnpinnedNode } from "../pinned-node.mjs";

const USAGE = `Usage: npm run cluster -- up [--foreground] [--run-dir DIR] | down | status

A local one-node Kubernetes cluster (the e2e tests' real node): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, containerd + runc, a CNI bridge and a kubelet.

  up             start it in the background and print the KUBECONFIG (Ctrl-C while starting stops it)
    --foreground stay attached; Ctrl-C stops the cluster
    --run-dir DIR  its files and logs (default ${defaultRunDir()})
  down           stop it and clean the host (no mounts, bridge, network namespaces or pod cgroups left)
  status         what runs

Images are not pulled: import OCI archives with
  ctr --address <run-dir>/containerd/containerd.sock -n k8s.io images import IMAGE.tar
and use imagePullPolicy: IfNotPresent or Never. Needs Linux and root; the first run builds the binaries
(scripts/build-binaries.sh).`;

function defaultRunDir(): string {
  return process.env.SM_INJECTOR_CLUSTER_DIR ?? "/tmp/sm-injector-cluster";
}

const say = (s: string) => process.stdout.write(`${s}\n`);

function kubeconfigHint(lock: NodeLock): string {
  return `export KUBECONFIG=${lock.kubeconfig}`;
}

/** Removes the files of a previous cluster in `runDir` (never across a mount: those are cleaned first). */
async function clearRunDir(runDir: string): Promise<void> {
  if (mountsUnder(runDir).length > 0) {
    const left = await cleanHost(runDir, path.join(runDir, "containerd", "containerd.sock"));
    if (left.mounts.length > 0) throw new Error(`${runDir} still has mounts: ${left.mounts.join(", ")}`);
  }
  rmSync(runDir, { recursive: true, force: true });
}

/** The cluster, owned by this process until a signal stops it. */
async function serve(runDir: string): Promise<void> {
  leaveSignalsToCaller();
  let stopRequested = false;
  let stop: (() => Promise<unknown>) | undefined;
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      if (stopRequested) return;
      stopRequested = true;
      say(`${signal}: stopping the cluster…`);
      void stop?.().then(() => process.exit(0));
    });
  }
  await clearRunDir(runDir);
  const node = await startRealNode({ runDir, keepRunDir: true, progress: say });
  stop = async () => {
    const left = await node.stop();
    say(isClean(left) ? "stopped; the host is clean" : `stopped; left behind: ${describeLeftovers(left)}`);
  };
  say(`ready: export KUBECONFIG=${node.kubeconfigPath}`);
  if (stopRequested) await stop().then(() => process.exit(0));
  // Stay up until a signal (the handlers above stop the cluster and exit).
  setInterval(() => {}, 1 << 30);
}

/** Starts `serve` detached and waits until it reports the node Ready (or fails). */
async function up(runDir: string): Promise<number> {
  const held = readNodeLock();
  if (held && isAlive(held.pid)) {
    say(`already up (process ${held.pid}, run directory ${held.runDir})`);
    if (held.kubeconfig) say(kubeconfigHint(held));
    return 0;
  }
  rmSync(path.join(path.dirname(runDir), `${path.basename(runDir)}.log`), { force: true });
  const logPath = `${runDir}.log`;
  const out = openSync(logPath, "a");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", import.meta.filename, "serve", "--run-dir", runDir],
    {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ["ignore", out, out],
    },
  );
  closeSync(out);
  child.unref();
  let interrupted = false;
  process.once("SIGINT", () => {
    interrupted = true;
    if (child.pid) process.kill(child.pid, "SIGTERM");
  });
  say(`starting (log ${logPath})…`);
  let shown = 0;
  for (;;) {
    const log = readFileSync(logPath, "utf8");
    process.stdout.write(log.slice(shown));
    shown = log.length;
    const lock = readNodeLock();
    // (The log's last line is the KUBECONFIG.)
    if (!interrupted && lock !== undefined && lock.pid === child.pid && lock.kubeconfig) return 0;
    if (child.exitCode !== null || (child.pid !== undefined && !isAlive(child.pid)))
      return interrupted ? 130 : 1;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Stops the cluster through its owner, or cleans up after an owner that died. */
async function down(): Promise<number> {
  const lock = readNodeLock();
  if (!lock) {
    say("no cluster is up");
    return 0;
  }
  if (isAlive(lock.pid)) {
    say(`stopping the cluster (process ${lock.pid})…`);
    process.kill(lock.pid, "SIGTERM");
    const deadline = Date.now() + 120_000;
    while (isAlive(lock.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    if (isAlive(lock.pid)) {
      say(`process ${lock.pid} did not stop in 120 s; see ${lock.runDir}.log`);
      return 1;
    }
  } else {
    say(`the cluster's process (${lock.pid}) is gone; cleaning up after it`);
    for (const pid of Object.values(lock.processes ?? {})) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    rmSync(NODE_LOCK, { force: true });
  }
  const left = await cleanHost(lock.runDir, lock.socket);
  say(isClean(left) ? "down; the host is clean" : `down; left behind: ${describeLeftovers(left)}`);
  return isClean(left) ? 0 : 1;
}

async function nodeCondition(kubeconfig: string): Promise<string> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const node = await kc.makeApiClient(CoreV1Api).readNode({ name: NODE_NAME });
  const ready = node.status?.conditions?.find((c) => c.type === "Ready");
  return `node ${NODE_NAME}: Ready=${ready?.status ?? "Unknown"}${ready?.message ? ` (${ready.message})` : ""}`;
}

async function status(): Promise<number> {
  const lock = readNodeLock();
  if (!lock || !isAlive(lock.pid)) {
    const left = lock ? leftovers(lock.runDir, lock.socket) : undefined;
    say(lock ? `down (its process ${lock.pid} is gone; npm run cluster -- down cleans up)` : "down");
    if (left && !isClean(left)) say(`left on the host: ${describeLeftovers(left)}`);
    return 3;
  }
  say(`up: process ${lock.pid}, run directory ${lock.runDir}`);
  for (const [name, pid] of Object.entries(lock.processes ?? {})) {
    say(`  ${name.padEnd(24)} pid ${String(pid).padEnd(8)} ${isAlive(pid) ? "running" : "NOT RUNNING"}`);
  }
  if (lock.kubeconfig) {
    say(await nodeCondition(lock.kubeconfig).catch((e) => `node: ${(e as Error).message}`));
    say(kubeconfigHint(lock));
  } else say("starting…");
  return 0;
}

async function main(): Promise<number> {
  const refusal = refuseUnpinnedNode("npm run cluster");
  if (refusal) {
    console.error(refusal);
    return 1;
  }
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      foreground: { type: "boolean", default: false },
      "run-dir": { type: "string", default: defaultRunDir() },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const runDir = path.resolve(values["run-dir"]);
  const [command] = positionals;
  if (values.help || command === undefined) {
    say(USAGE);
    return values.help ? 0 : 2;
  }
  switch (command) {
    case "up":
      if (values.foreground) {
        await serve(runDir);
        return new Promise<number>(() => {});
      }
      return up(runDir);
    case "serve":
      await serve(runDir);
      return new Promise<number>(() => {});
    case "down":
      return down();
    case "status":
      return status();
    default:
      console.error(`unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`npm run cluster: ${(err as Error).message}`);
    process.exit(1);
  },
);
