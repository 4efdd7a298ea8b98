/**
 * A real one-node cluster for the e2e tests and `npm run cluster`: etcd + kube-apiserver (the
 * control-plane harness, with Node authorization and kubelet credentials), kube-controller-manager,
 * kube-scheduler, containerd + runc, a CNI bridge, a kubelet, kube-proxy (iptables mode) and CoreDNS
 * (the cluster DNS, a host process), all built from Go modules and Debian packages by
 * scripts/build-binaries.sh. Pods run for real from images imported into containerd
 * (nothing is pulled: see importImage). The settings these hosts need are in real-node-config.ts;
 * what a node leaves on the host, and its removal, in real-node-host.ts.
 *
 * One node per machine (the kubelet owns the `kubepods` cgroups and the bridge): a lock file names
 * the running node; the next start cleans up after a node whose process died.
 */
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { type CertAuthority, generateCA, generateCert } from "./certs.ts";
import {
  type ControlPlane,
  ensureBinaries,
  kubeconfigYaml,
  readPinnedVersions,
  startControlPlane,
} from "./controlplane.ts";
import { getFreePorts } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitForHttp } from "./process.ts";
import {
  cniConflist,
  containerdConfigToml,
  corefile,
  kubeletConfigYaml,
  kubeProxyConfigYaml,
  NODE_NAME,
  type NodePaths,
  nodeIP,
  nodePaths,
  POD_GATEWAY,
} from "./real-node-config.ts";
import { cleanHost, describeLeftovers, isClean, type Leftovers, leftovers } from "./real-node-host.ts";

const execFileAsync = promisify(execFile);

/** Names the running node: the process that owns it, its run directory and containerd socket. */
export const NODE_LOCK = "/run/sm-injector-real-node.json";
/** The containerd namespace of the CRI (the images the kubelet sees). */
const K8S_NAMESPACE = "k8s.io";

export interface NodeLock {
  pid: number;
  runDir: string;
  socket: string;
  kubeconfig?: string;
  processes?: Record<string, number>;
}

export interface RealNode {
  cp: ControlPlane;
  /** Admin kubeconfig (system:masters). */
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  nodeName: string;
  /** The node's InternalIP (the default-route interface's address). */
  nodeIP: string;
  /** The pods' gateway: a host service the pods need listens here (or on 0.0.0.0). */
  podGateway: string;
  binDir: string;
  paths: NodePaths;
  processes: Record<
    "containerd" | "kubelet" | "controllerManager" | "scheduler" | "kubeProxy" | "coredns",
    ManagedProcess
  >;
  /** Imports an OCI archive into the CRI's image store; returns the image names it holds. */
  importImage(archive: string, name?: string): Promise<string[]>;
  /** The image names in the node's CRI image store (what pods can run: nothing is pulled). */
  images(): Promise<string[]>;
  /** What this node has on the host right now (mounts, bridge, pod cgroups, container processes). */
  leftovers(): Leftovers;
  /**
   * Deletes every pod through the API (so the kubelet tears sandboxes down), stops the daemons by
   * their PIDs, cleans the host; returns what is left (nothing, normally). Idempotent.
   */
  stop(): Promise<Leftovers>;
}

export interface StartRealNodeOptions {
  /** The run directory (created; default a new one under the temp dir). */
  runDir?: string;
  /** Keep the run directory (logs) after stop(); default: remove it (also $SM_INJECTOR_KEEP_WORKDIR=1). */
  keepRunDir?: boolean;
  /** Receives progress lines. */
  progress?: (line: string) => void;
  /** Deadline for each component to become ready (default 120 s). */
  timeoutMs?: number;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function readNodeLock(): NodeLock | undefined {
  try {
    return JSON.parse(readFileSync(NODE_LOCK, "utf8")) as NodeLock;
  } catch {
    return undefined;
  }
}

/** How long a start waits for another live node on this machine to stop (default 15 min). */
const LOCK_WAIT_MS = Number(process.env.SM_INJECTOR_NODE_LOCK_WAIT_S ?? 900) * 1000;

/**
 * Takes the one-node-per-machine lock for this process. A node held by a live process (another test
 * file, `npm run cluster`, a colleague's demo) is waited for, up to `waitMs`; a lock whose process is
 * gone is taken over after cleaning up what that node left on the host.
 */
async function takeNodeLock(
  lock: NodeLock,
  progress: (l: string) => void,
  waitMs = LOCK_WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  let waiting = false;
  for (let attempt = 0; attempt < 3; ) {
    try {
      await writeFile(NODE_LOCK, JSON.stringify(lock), { flag: "wx" });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const held = readNodeLock();
    if (held && isAlive(held.pid) && held.pid !== process.pid) {
      if (Date.now() > deadline) {
        throw new Error(
          `a real node is already running on this machine (process ${held.pid}, run directory ${held.runDir}) ` +
            `and did not stop within ${Math.round(waitMs / 1000)} s; stop it first: npm run cluster -- down`,
        );
      }
      if (!waiting) progress(`waiting for the node of process ${held.pid} (${held.runDir}) to stop…`);
      waiting = true;
      await delay(2000);
      continue;
    }
    if (held) {
      progress(`cleaning up after a node whose process (${held.pid}) is gone: ${held.runDir}`);
      await cleanHost(held.runDir, held.socket);
    }
    rmSync(NODE_LOCK, { force: true });
    attempt++;
  }
  throw new Error(`could not take ${NODE_LOCK}`);
}

/** Updates the lock's details (kubeconfig, PIDs) for `npm run cluster -- status|down`. */
async function updateNodeLock(lock: NodeLock): Promise<void> {
  await writeFile(NODE_LOCK, JSON.stringify(lock));
}

function releaseNodeLock(): void {
  if (readNodeLock()?.pid === process.pid) rmSync(NODE_LOCK, { force: true });
}

/** `ctr` against the node's containerd, in the CRI's namespace. */
async function ctr(binDir: string, socket: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    path.join(binDir, "ctr"),
    ["--address", socket, "--namespace", K8S_NAMESPACE, ...args],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout;
}

/** The image names in the node's CRI image store. */
async function imageNames(binDir: string, socket: string): Promise<string[]> {
  return (await ctr(binDir, socket, ["images", "list", "--quiet"])).split("\n").filter(Boolean);
}

/**
 * `ctr images import` of an OCI archive (e.g. `skopeo copy … oci-archive:x.tar:NAME`), unpacked for
 * the CRI; with `name`, also tagged so (a pod's `image:` must match a stored name exactly, and
 * `imagePullPolicy` must be IfNotPresent or Never: nothing can be pulled).
 */
async function importInto(binDir: string, socket: string, archive: string, name?: string): Promise<string[]> {
  const before = new Set(await imageNames(binDir, socket));
  await ctr(binDir, socket, ["images", "import", "--platform", "linux/amd64", archive]);
  const all = await imageNames(binDir, socket);
  const names = all.filter((n) => !before.has(n) && !n.startsWith("sha256:"));
  if (name === undefined || names.includes(name)) return names;
  if (all.includes(name)) return [...names, name];
  const source = names[0];
  if (source === undefined) throw new Error(`ctr imported no named image from ${archive}`);
  await ctr(binDir, socket, ["images", "tag", "--force", source, name]);
  return [...names, name];
}

interface NodePki {
  ca: CertAuthority;
  kubeletServing: { certPath: string; keyPath: string };
  kubeletClient: { certPem: string; keyPem: string };
  apiServerKubeletClient: { certPath: string; keyPath: string };
}

/** The cluster CA and the kubelet's certificates (serving for the node IP; client as system:node:NAME). */
async function nodePki(dir: string, ip: string): Promise<NodePki> {
  const ca = await generateCA(dir, "sm-injector-cluster-ca");
  const [kubeletServing, kubeletClient, apiServerKubeletClient] = await Promise.all([
    generateCert(dir, ca, { name: "kubelet-serving", cn: NODE_NAME, sans: [ip, NODE_NAME, "localhost"] }),
    generateCert(dir, ca, {
      name: "kubelet-client",
      cn: `system:node:${NODE_NAME}`,
      org: "system:nodes",
      client: true,
    }),
    // kube-apiserver → kubelet (logs, exec): authorized by the kubelet's webhook authorizer.
    generateCert(dir, ca, {
      name: "apiserver-kubelet-client",
      cn: "kube-apiserver-kubelet-client",
      org: "system:masters",
      client: true,
    }),
  ]);
  return { ca, kubeletServing, kubeletClient, apiServerKubeletClient };
}

/** kube-apiserver flags for a cluster with a node (on top of the control-plane harness's). */
function apiServerNodeArgs(pki: NodePki, ip: string): string[] {
  return [
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
    `--kubelet-client-certificate=${pki.apiServerKubeletClient.certPath}`,
    `--kubelet-client-key=${pki.apiServerKubeletClient.keyPath}`,
    `--kubelet-certificate-authority=${pki.ca.certPath}`,
    "--kubelet-preferred-address-types=InternalIP",
    // Pods reach it through the `kubernetes` Service, whose endpoint it publishes (the lease
    // reconciler refuses a loopback address: the node's address then).
    "--bind-address=0.0.0.0",
    `--advertise-address=${ip}`,
    "--endpoint-reconciler-type=lease",
  ];
}

/**
 * One real node per test file: started in `before` (then `setup`, e.g. image imports), stopped in
 * `after`, which fails when the teardown left anything on the host. Pass node:test's hooks.
 */
export function useRealNode(
  hooks: { before: (fn: () => Promise<void>) => void; after: (fn: () => Promise<void>) => void },
  opts: StartRealNodeOptions & { setup?: (node: RealNode) => Promise<void> } = {},
): () => RealNode {
  let node: RealNode | undefined;
  let starting: Promise<RealNode> | undefined;
  hooks.before(async () => {
    starting = startRealNode({ progress: (l) => process.stderr.write(`[real-node] ${l}\n`), ...opts });
    node = await starting;
    await opts.setup?.(node);
  });
  hooks.after(async () => {
    await starting?.catch(() => {});
    const left = await node?.stop();
    if (left && !isClean(left)) throw new Error(`the real node left behind: ${describeLeftovers(left)}`);
  });
  return () => {
    if (node === undefined) throw new Error("the real node is not up (see the before hook's error)");
    return node;
  };
}

interface Started {
  binDir: string;
  paths: NodePaths;
  ip: string;
  pki: NodePki;
  cp: ControlPlane;
  progress: (line: string) => void;
  timeoutMs: number;
}

/** containerd with the node's config (the shim found on PATH next to it), ready when `ctr version` answers. */
async function startContainerd(s: Started): Promise<ManagedProcess> {
  const { paths: p, binDir } = s;
  await mkdir(p.cniConfDir, { recursive: true });
  await writeFile(path.join(p.cniConfDir, "10-sm-injector.conflist"), cniConflist(p));
  const pause = pauseImage(binDir);
  await mkdir(path.dirname(p.containerdConfig), { recursive: true });
  await writeFile(p.containerdConfig, containerdConfigToml(p, pause.name));
  const proc = spawnManaged("containerd", path.join(binDir, "containerd"), ["--config", p.containerdConfig], {
    logPath: path.join(p.runDir, "containerd.log"),
    cwd: p.runDir,
    env: { ...process.env, PATH: `${binDir}:/usr/sbin:/usr/bin:/sbin:/bin` },
  });
  const deadline = Date.now() + s.timeoutMs;
  for (;;) {
    if (!proc.isRunning()) throw new Error(`containerd exited; log ${proc.logPath}:\n${proc.logTail()}`);
    try {
      await ctr(binDir, p.containerdSocket, ["version"]);
      break;
    } catch (e) {
      if (Date.now() > deadline)
        throw new Error(`containerd did not answer in time: ${(e as Error).message}`);
      await delay(100);
    }
  }
  await importInto(binDir, p.containerdSocket, pause.archive, pause.name);
  return proc;
}

/** The sandbox image (scripts/build-binaries.sh pause-image) and the name containerd pins it under. */
export function pauseImage(binDir: string): { archive: string; name: string } {
  const version = readPinnedVersions().PAUSE_VERSION;
  if (!version) throw new Error("PAUSE_VERSION is missing from scripts/versions.env");
  return { archive: path.join(binDir, "images", "pause.oci.tar"), name: `registry.k8s.io/pause:${version}` };
}

/** The tests' smallest image (scripts/build-binaries.sh busybox-image names it BUSYBOX_IMAGE_NAME). */
export function busyboxImage(binDir: string): { archive: string; name: string } {
  return {
    archive: path.join(binDir, "images", "busybox.oci.tar"),
    name: "sm-injector.local/busybox:static",
  };
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/**
 * Creates a namespace and waits for what kube-controller-manager adds to it (the `default`
 * ServiceAccount, the kube-root-ca.crt ConfigMap that token volumes mount).
 */
export async function createNamespace(core: CoreV1Api, name: string): Promise<void> {
  await core.createNamespace({ body: { metadata: { name } } });
  await waitUntil(`the ${name} namespace's default ServiceAccount and kube-root-ca.crt`, 30_000, async () => {
    await core.readNamespacedServiceAccount({ namespace: name, name: "default" });
    await core.readNamespacedConfigMap({ namespace: name, name: "kube-root-ca.crt" });
    return true;
  });
}

/** kube-controller-manager and kube-scheduler on loopback, as admin (no leader election: one of each). */
async function startControllers(
  s: Started,
): Promise<Pick<RealNode["processes"], "controllerManager" | "scheduler">> {
  const { cp, binDir, paths: p } = s;
  const [kcmPort, schedPort] = (await getFreePorts(2)) as [number, number];
  const delegated = [
    `--kubeconfig=${cp.kubeconfigPath}`,
    `--authentication-kubeconfig=${cp.kubeconfigPath}`,
    `--authorization-kubeconfig=${cp.kubeconfigPath}`,
    "--bind-address=127.0.0.1",
    "--leader-elect=false",
  ];
  const controllerManager = spawnManaged(
    "kube-controller-manager",
    path.join(binDir, "kube-controller-manager"),
    [
      ...delegated,
      `--secure-port=${kcmPort}`,
      `--cert-dir=${path.join(p.runDir, "kube-controller-manager")}`,
      `--service-account-private-key-file=${cp.serviceAccountKey.privateKeyPath}`,
      // Published to every namespace as the kube-root-ca.crt ConfigMap (projected tokens mount it).
      `--root-ca-file=${cp.ca.certPath}`,
      "--use-service-account-credentials=false",
      "--service-cluster-ip-range=10.0.0.0/24",
      "--cluster-name=sm-injector",
    ],
    { logPath: path.join(p.runDir, "kube-controller-manager.log"), cwd: p.runDir },
  );
  const scheduler = spawnManaged(
    "kube-scheduler",
    path.join(binDir, "kube-scheduler"),
    [...delegated, `--secure-port=${schedPort}`, `--cert-dir=${path.join(p.runDir, "kube-scheduler")}`],
    { logPath: path.join(p.runDir, "kube-scheduler.log"), cwd: p.runDir },
  );
  return { controllerManager, scheduler };
}

/**
 * The Services of the cluster, by the real components: kube-proxy (iptables mode: cluster IPs and
 * node ports DNATed to ready endpoints, for pods and for the host, e.g. the API server calling a
 * webhook's Service) and CoreDNS (the Services' names, on the node's address: the kubelet's
 * clusterDNS). Both are host processes with the admin kubeconfig; ready when they have synced.
 */
async function startServices(
  s: Started,
): Promise<{ processes: Pick<RealNode["processes"], "kubeProxy" | "coredns">; ready: Promise<void> }> {
  const { cp, binDir, paths: p } = s;
  const [healthzPort, metricsPort, readyPort] = (await getFreePorts(3)) as [number, number, number];
  await writeFile(
    p.kubeProxyConfig,
    kubeProxyConfigYaml({ kubeconfig: cp.kubeconfigPath, healthzPort, metricsPort }),
  );
  await writeFile(p.corefile, corefile({ address: s.ip, kubeconfig: cp.kubeconfigPath, readyPort }));
  const kubeProxy = spawnManaged(
    "kube-proxy",
    path.join(binDir, "kube-proxy"),
    [`--config=${p.kubeProxyConfig}`, "--v=1"],
    { logPath: path.join(p.runDir, "kube-proxy.log"), cwd: p.runDir },
  );
  const coredns = spawnManaged("coredns", path.join(binDir, corednsBinary()), ["-conf", p.corefile], {
    logPath: path.join(p.runDir, "coredns.log"),
    cwd: p.runDir,
  });
  const ready = Promise.all([
    waitForHttp(`http://127.0.0.1:${healthzPort}/healthz`, { process: kubeProxy, timeoutMs: s.timeoutMs }),
    waitForHttp(`http://127.0.0.1:${readyPort}/ready`, { process: coredns, timeoutMs: s.timeoutMs }),
  ]).then(() => undefined);
  // Awaited later (after the kubelet): not an unhandled rejection meanwhile.
  ready.catch(() => undefined);
  return { processes: { kubeProxy, coredns }, ready };
}

/** The CoreDNS binary's name in the bin directory (scripts/build-binaries.sh coredns: coredns-VERSION). */
function corednsBinary(): string {
  const version = readPinnedVersions().COREDNS_VERSION;
  if (!version) throw new Error("COREDNS_VERSION is missing from scripts/versions.env");
  return `coredns-${version}`;
}

/** `kube-proxy --cleanup`: removes every iptables (and nftables) rule and chain kube-proxy made. */
async function cleanUpKubeProxy(binDir: string, runDir: string): Promise<void> {
  await execFileAsync(path.join(binDir, "kube-proxy"), ["--cleanup", "--v=0"], { cwd: runDir }).catch(
    () => undefined,
  );
}

/** The kubelet, registering NODE_NAME at the node IP; ready when healthz answers. */
async function startKubelet(s: Started): Promise<ManagedProcess> {
  const { cp, binDir, paths: p, pki } = s;
  const [port, healthzPort] = (await getFreePorts(2)) as [number, number];
  await mkdir(p.podLogsDir, { recursive: true });
  await writeFile(
    p.kubeletKubeconfig,
    kubeconfigYaml(cp.apiServerUrl, cp.caCertPem, pki.kubeletClient.certPem, pki.kubeletClient.keyPem),
    { mode: 0o600 },
  );
  await writeFile(
    p.kubeletConfig,
    kubeletConfigYaml(p, {
      address: s.ip,
      port,
      healthzPort,
      clientCAFile: pki.ca.certPath,
      tlsCertFile: pki.kubeletServing.certPath,
      tlsPrivateKeyFile: pki.kubeletServing.keyPath,
      clusterDNS: s.ip,
    }),
  );
  const kubelet = spawnManaged(
    "kubelet",
    path.join(binDir, "kubelet"),
    [
      `--config=${p.kubeletConfig}`,
      `--kubeconfig=${p.kubeletKubeconfig}`,
      `--root-dir=${p.kubeletRoot}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${s.ip}`,
      "--v=1",
    ],
    { logPath: path.join(p.runDir, "kubelet.log"), cwd: p.runDir },
  );
  await waitForHttp(`http://127.0.0.1:${healthzPort}/healthz`, { process: kubelet, timeoutMs: s.timeoutMs });
  return kubelet;
}

/** Polls until `check` returns true (it may throw meanwhile), or fails naming `what`. */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
    try {
      if (await check()) return;
    } catch (e) {
      last = ` (last: ${(e as Error).message})`;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last}`);
    await delay(wait);
  }
}

/** The node Ready and the controllers at work (the `default` ServiceAccount exists). */
async function waitForNodeReady(
  core: CoreV1Api,
  processes: ManagedProcess[],
  timeoutMs: number,
): Promise<void> {
  const alive = () => {
    const dead = processes.find((p) => !p.isRunning());
    if (dead) throw new Error(`${dead.name} exited; log ${dead.logPath}:\n${dead.logTail()}`);
  };
  await waitUntil(`node ${NODE_NAME} to be Ready`, timeoutMs, async () => {
    alive();
    const node = await core.readNode({ name: NODE_NAME });
    return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  });
  await waitUntil("the default ServiceAccount (kube-controller-manager)", timeoutMs, async () => {
    alive();
    await core.readNamespacedServiceAccount({ namespace: "default", name: "default" });
    return true;
  });
}

/** Starts the cluster and its node; on failure, stops what was started and cleans the host. */
export async function startRealNode(opts: StartRealNodeOptions = {}): Promise<RealNode> {
  const progress = opts.progress ?? (() => {});
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const binDir = process.env.SM_INJECTOR_BIN_DIR ?? (await ensureBinaries(["control-plane", "node"]));
  const runDir = opts.runDir ?? (await mkdtemp(path.join(os.tmpdir(), "sm-injector-node-")));
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const paths = nodePaths(runDir);
  const keep = opts.keepRunDir ?? process.env.SM_INJECTOR_KEEP_WORKDIR === "1";
  const lock: NodeLock = { pid: process.pid, runDir, socket: paths.containerdSocket };
  await takeNodeLock(lock, progress).catch(async (e) => {
    // Nothing ran in it: a start that never got the node leaves no run directory behind.
    if (opts.runDir === undefined) await rm(runDir, { recursive: true, force: true });
    throw e;
  });
  const t0 = performance.now();
  const procs: Partial<RealNode["processes"]> = {};
  let cp: ControlPlane | undefined;
  const stopNow = () => stopNode({ binDir, paths, cp, procs, keep });
  try {
    const ip = nodeIP();
    const pki = await nodePki(path.join(runDir, "pki"), ip);
    progress(`control plane (etcd, kube-apiserver) in ${runDir}`);
    cp = await startControlPlane({
      binDir,
      ca: pki.ca,
      workDir: path.join(runDir, "control-plane"),
      keepWorkDir: true,
      extraApiServerArgs: apiServerNodeArgs(pki, ip),
      timeoutMs,
    });
    const s: Started = { binDir, paths, ip, pki, cp, progress, timeoutMs };
    progress("containerd, kube-controller-manager, kube-scheduler, kube-proxy, CoreDNS");
    // Each process is recorded as soon as it runs, so that a failure of another stops it too.
    const services = await startServices(s);
    Object.assign(procs, services.processes);
    await Promise.all([
      startContainerd(s).then((containerd) => Object.assign(procs, { containerd })),
      startControllers(s).then((controllers) => Object.assign(procs, controllers)),
    ]);
    progress(`kubelet (node ${NODE_NAME} at ${ip})`);
    procs.kubelet = await startKubelet(s);
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await waitForNodeReady(core, Object.values(procs), timeoutMs);
    // kube-proxy is healthy once it has synced the rules for its Node (which the kubelet registers).
    await services.ready;
    progress(`node Ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const processes = procs as RealNode["processes"];
    await updateNodeLock({
      ...lock,
      kubeconfig: cp.kubeconfigPath,
      processes: Object.fromEntries(
        [...Object.values(processes), cp.processes.apiServer, cp.processes.etcd].map((p) => [p.name, p.pid]),
      ),
    });
    let stopping: Promise<Leftovers> | undefined;
    return {
      cp,
      kubeconfigPath: cp.kubeconfigPath,
      kubeConfig: cp.kubeConfig,
      nodeName: NODE_NAME,
      nodeIP: ip,
      podGateway: POD_GATEWAY,
      binDir,
      paths,
      processes,
      importImage: (archive, name) => importInto(binDir, paths.containerdSocket, archive, name),
      images: () => imageNames(binDir, paths.containerdSocket),
      leftovers: () => leftovers(runDir, paths.containerdSocket),
      stop: () => {
        stopping ??= stopNow();
        return stopping;
      },
    };
  } catch (err) {
    await stopNow().catch(() => undefined);
    throw err;
  }
}

/** Deletes every pod and waits until the kubelet has stopped them (their sandboxes, netns, mounts). */
async function drainPods(core: CoreV1Api, binDir: string, socket: string): Promise<void> {
  const pods = (await core.listPodForAllNamespaces()).items;
  await Promise.all(
    pods.map((pod) =>
      core
        .deleteNamespacedPod({
          namespace: pod.metadata?.namespace as string,
          name: pod.metadata?.name as string,
          gracePeriodSeconds: 1,
        })
        .catch(() => undefined),
    ),
  );
  await waitUntil("the kubelet to stop every pod", 60_000, async () => {
    const left = (await core.listPodForAllNamespaces()).items.length;
    const tasks = (await ctr(binDir, socket, ["tasks", "list", "--quiet"])).split("\n").filter(Boolean);
    return left === 0 && tasks.length === 0;
  });
}

/** Kills and deletes every containerd task left (so that each shim exits). */
async function deleteTasks(binDir: string, socket: string): Promise<void> {
  const tasks = (await ctr(binDir, socket, ["tasks", "list", "--quiet"]).catch(() => ""))
    .split("\n")
    .filter(Boolean);
  for (const id of tasks) {
    await ctr(binDir, socket, ["tasks", "delete", "--force", id]).catch(() => undefined);
  }
}

async function stopNode(n: {
  binDir: string;
  paths: NodePaths;
  cp: ControlPlane | undefined;
  procs: Partial<RealNode["processes"]>;
  keep: boolean;
}): Promise<Leftovers> {
  const { binDir, paths: p, cp, procs } = n;
  // No controller may recreate what is being deleted.
  await Promise.all([procs.controllerManager?.stop(), procs.scheduler?.stop()]);
  if (cp && procs.kubelet?.isRunning() && procs.containerd?.isRunning()) {
    await drainPods(cp.kubeConfig.makeApiClient(CoreV1Api), binDir, p.containerdSocket).catch(
      () => undefined,
    );
  }
  await procs.kubelet?.stop();
  if (procs.containerd?.isRunning()) await deleteTasks(binDir, p.containerdSocket);
  await procs.containerd?.stop();
  await Promise.all([procs.kubeProxy?.stop(), procs.coredns?.stop()]);
  if (procs.kubeProxy) await cleanUpKubeProxy(binDir, p.runDir);
  await cp?.stop();
  const left = await cleanHost(p.runDir, p.containerdSocket);
  releaseNodeLock();
  if (!n.keep && isClean(left)) await rm(p.runDir, { recursive: true, force: true });
  return left;
}
