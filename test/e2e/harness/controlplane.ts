/**
 * A process-based Kubernetes control plane for the e2e tests (like controller-runtime's envtest):
 * etcd + kube-apiserver built from Go modules by scripts/build-binaries.sh, listening on loopback
 * random ports, with a throwaway PKI and an admin kubeconfig (client certificate, system:masters).
 * No controller-manager and no scheduler: tests create the ServiceAccounts their pods use, and pods
 * stay Pending (they are checked as the API server stored them).
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { access, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { type CertAuthority, generateCA, generateCert, generateRsaKeyPair, type KeyPair } from "./certs.ts";
import { getFreePorts } from "./ports.ts";
import { type ManagedProcess, spawnManaged, waitForHttp } from "./process.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const BUILD_SCRIPT = path.join(REPO_ROOT, "scripts", "build-binaries.sh");
const VERSIONS_FILE = path.join(REPO_ROOT, "scripts", "versions.env");

/** The issuer of service-account tokens, and the audiences the API server accepts. */
export const SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local";
export const API_AUDIENCES = [SERVICE_ACCOUNT_ISSUER, "sts.amazonaws.com"];

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  apiServerUrl: string;
  /** http://127.0.0.1:<port> */
  etcdUrl: string;
  /** Admin kubeconfig file (client certificate auth, group system:masters; data embedded). */
  kubeconfigPath: string;
  /** Loaded from kubeconfigPath. */
  kubeConfig: KubeConfig;
  /** CA of the API server's serving certificate (also the client CA). */
  caCertPem: string;
  /** The cluster CA (signs the serving and the admin client certificates). */
  ca: CertAuthority;
  /** The service-account token signing key (kube-controller-manager signs with it too). */
  serviceAccountKey: KeyPair;
  /** The directory with the binaries (kube-apiserver, etcd, helm). */
  binDir: string;
  /** Scratch directory (PKI, etcd data, logs: etcd.log, kube-apiserver.log); removed by stop(). */
  workDir: string;
  /** The flags kube-apiserver was started with. */
  apiServerArgs: string[];
  processes: { etcd: ManagedProcess; apiServer: ManagedProcess };
  /** Kills kube-apiserver then etcd (SIGTERM, SIGKILL after a timeout), removes workDir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /** Directory with kube-apiserver and etcd; default $SM_INJECTOR_BIN_DIR, else ensureBinaries(). */
  binDir?: string;
  /** Appended to the kube-apiserver flags; a `--flag=value` here replaces the harness's own `--flag`. */
  extraApiServerArgs?: string[];
  /** Receives every output line of etcd and kube-apiserver (they always go to log files in workDir). */
  log?: (line: string) => void;
  /** Keep workDir after stop() (for debugging; also $SM_INJECTOR_KEEP_WORKDIR=1). */
  keepWorkDir?: boolean;
  /** The cluster CA to use (e.g. one that also signed a kubelet's certificates); default a new one. */
  ca?: CertAuthority;
  /** Use (and create) this directory as workDir instead of a fresh one under /dev/shm or the temp dir. */
  workDir?: string;
  /** Deadline for etcd + kube-apiserver to become ready (default 90 s). */
  timeoutMs?: number;
  /**
   * A kubeconfig (YAML) with the credentials kube-apiserver presents to webhooks: written with an
   * AdmissionConfiguration for MutatingAdmissionWebhook and passed as --admission-control-config-file.
   */
  webhookKubeconfigYaml?: string;
}

/** The AdmissionConfiguration that gives kube-apiserver's webhook calls the credentials of `kubeconfigPath`. */
export function admissionConfigurationYaml(kubeconfigPath: string): string {
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: AdmissionConfiguration",
    "plugins:",
    "  - name: MutatingAdmissionWebhook",
    "    configuration:",
    "      apiVersion: apiserver.config.k8s.io/v1",
    "      kind: WebhookAdmissionConfiguration",
    `      kubeConfigFile: ${JSON.stringify(kubeconfigPath)}`,
    "",
  ].join("\n");
}

/** The pins of scripts/versions.env (KUBERNETES_VERSION, ETCD_VERSION, HELM_VERSION, ...). */
export function readPinnedVersions(): Record<string, string> {
  const pins: Record<string, string> = {};
  for (const line of readFileSync(VERSIONS_FILE, "utf8").split("\n")) {
    const m = /^\s*([A-Z0-9_]+)=["']?([^"'\s#]*)["']?/.exec(line);
    if (m?.[1] && m[2] !== undefined) pins[m[1]] = m[2];
  }
  return pins;
}

const binaries = new Map<string, Promise<string>>();

/**
 * Runs scripts/build-binaries.sh for `targets` (default the control plane: kube-apiserver, etcd, helm;
 * "node" adds the real node's binaries, packages and pause image; it builds once, then caches; its
 * progress is streamed to stderr) and returns the bin directory. Memoized per process.
 */
export function ensureBinaries(targets: string[] = ["control-plane"]): Promise<string> {
  const key = targets.join(" ");
  const cached = binaries.get(key);
  if (cached) return cached;
  const built = new Promise<string>((resolve, reject) => {
    const child = spawn("bash", [BUILD_SCRIPT, ...targets], { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (c: string) => {
      stdout += c;
    });
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const dir = stdout.trim().split("\n").pop()?.trim() ?? "";
      if (code === 0 && dir !== "") resolve(dir);
      else reject(new Error(`${BUILD_SCRIPT} failed (code ${code}, signal ${signal}); see its output above`));
    });
  });
  binaries.set(key, built);
  built.catch(() => {
    binaries.delete(key);
  });
  return built;
}

/**
 * `base` without the flags `extra` sets, then `extra`: kube-apiserver appends repeated list flags
 * (--authorization-mode=RBAC twice is an error), so an override must replace, not repeat.
 */
function withOverrides(base: string[], extra: string[]): string[] {
  const name = (arg: string) => arg.split("=", 1)[0];
  const overridden = new Set(extra.map(name));
  return [...base.filter((arg) => !overridden.has(name(arg))), ...extra];
}

/** A fast scratch location: /dev/shm (tmpfs) when usable, else the OS temp dir. */
async function scratchRoot(): Promise<string> {
  if (process.env.SM_INJECTOR_E2E_TMPDIR) return process.env.SM_INJECTOR_E2E_TMPDIR;
  try {
    await access("/dev/shm", 0o2 /* W_OK */);
    return "/dev/shm";
  } catch {
    return os.tmpdir();
  }
}

/** A kubeconfig (data embedded) for a client certificate. */
export function kubeconfigYaml(server: string, caPem: string, certPem: string, keyPem: string): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: e2e",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caPem)}`,
    "users:",
    "- name: admin",
    "  user:",
    `    client-certificate-data: ${b64(certPem)}`,
    `    client-key-data: ${b64(keyPem)}`,
    "contexts:",
    "- name: e2e",
    "  context:",
    "    cluster: e2e",
    "    user: admin",
    "current-context: e2e",
    "",
  ].join("\n");
}

/** Starts etcd and kube-apiserver on loopback random ports and waits until /readyz answers 200. */
export async function startControlPlane(opts: StartControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = opts.binDir ?? process.env.SM_INJECTOR_BIN_DIR ?? (await ensureBinaries());
  for (const bin of ["etcd", "kube-apiserver"]) {
    if (!existsSync(path.join(binDir, bin))) throw new Error(`${bin} not found in ${binDir}`);
  }
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const keep = opts.keepWorkDir ?? process.env.SM_INJECTOR_KEEP_WORKDIR === "1";
  const workDir = opts.workDir ?? (await mkdtemp(path.join(await scratchRoot(), "sm-injector-e2e-")));
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const started: ManagedProcess[] = [];

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Reverse start order: kube-apiserver first, then etcd.
      for (const p of [...started].reverse()) await p.stop(10_000);
      if (!keep) await rm(workDir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    const pki = path.join(workDir, "pki");
    const ca = opts.ca ?? (await generateCA(pki, "sm-injector-e2e-ca"));
    const [serving, admin, saKey] = await Promise.all([
      generateCert(pki, ca, {
        name: "apiserver",
        cn: "kube-apiserver",
        sans: [
          "127.0.0.1",
          "localhost",
          "10.0.0.1",
          "kubernetes",
          "kubernetes.default",
          "kubernetes.default.svc",
          "kubernetes.default.svc.cluster.local",
        ],
      }),
      generateCert(pki, ca, { name: "admin", cn: "admin", org: "system:masters", client: true }),
      generateRsaKeyPair(pki, "service-account"),
    ]);

    const [etcdClientPort, etcdPeerPort, apiPort] = (await getFreePorts(3)) as [number, number, number];
    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcdData = path.join(workDir, "etcd");
    await mkdir(etcdData, { recursive: true, mode: 0o700 });
    const etcd = spawnManaged(
      "etcd",
      path.join(binDir, "etcd"),
      [
        "--name=e2e",
        `--data-dir=${etcdData}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${etcdPeerUrl}`,
        `--initial-advertise-peer-urls=${etcdPeerUrl}`,
        `--initial-cluster=e2e=${etcdPeerUrl}`,
        "--initial-cluster-state=new",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ],
      {
        logPath: path.join(workDir, "etcd.log"),
        cwd: workDir,
        ...(opts.log ? { log: opts.log } : {}),
        ...(keep ? {} : { removeOnOrphan: workDir }),
      },
    );
    started.push(etcd);
    await waitForHttp(`${etcdUrl}/health`, { process: etcd, timeoutMs });

    const apiServerUrl = `https://127.0.0.1:${apiPort}`;
    const admissionArgs: string[] = [];
    if (opts.webhookKubeconfigYaml !== undefined) {
      const kubeconfig = path.join(workDir, "webhook-kubeconfig.yaml");
      const admissionConfig = path.join(workDir, "admission-config.yaml");
      await writeFile(kubeconfig, opts.webhookKubeconfigYaml, { mode: 0o600 });
      await writeFile(admissionConfig, admissionConfigurationYaml(kubeconfig));
      admissionArgs.push(`--admission-control-config-file=${admissionConfig}`);
    }
    const apiServerArgs = withOverrides(
      [
        `--etcd-servers=${etcdUrl}`,
        `--secure-port=${apiPort}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        // The lease/master-count reconcilers refuse a loopback advertise address; there are no
        // in-cluster clients of the `kubernetes` Service here anyway.
        "--endpoint-reconciler-type=none",
        `--cert-dir=${path.join(workDir, "apiserver-certs")}`,
        `--tls-cert-file=${serving.certPath}`,
        `--tls-private-key-file=${serving.keyPath}`,
        `--client-ca-file=${ca.certPath}`,
        "--authorization-mode=RBAC",
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${saKey.publicKeyPath}`,
        `--service-account-signing-key-file=${saKey.privateKeyPath}`,
        `--api-audiences=${API_AUDIENCES.join(",")}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
        "--profiling=false",
        ...admissionArgs,
      ],
      opts.extraApiServerArgs ?? [],
    );
    const apiServer = spawnManaged("kube-apiserver", path.join(binDir, "kube-apiserver"), apiServerArgs, {
      logPath: path.join(workDir, "kube-apiserver.log"),
      cwd: workDir,
      ...(opts.log ? { log: opts.log } : {}),
      ...(keep ? {} : { removeOnOrphan: workDir }),
    });
    started.push(apiServer);
    await waitForHttp(`${apiServerUrl}/readyz`, {
      process: apiServer,
      timeoutMs,
      ca: ca.certPem,
      cert: admin.certPem,
      key: admin.keyPem,
    });

    const kubeconfigPath = path.join(workDir, "kubeconfig");
    await writeFile(kubeconfigPath, kubeconfigYaml(apiServerUrl, ca.certPem, admin.certPem, admin.keyPem), {
      mode: 0o600,
    });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);

    return {
      apiServerUrl,
      etcdUrl,
      kubeconfigPath,
      kubeConfig,
      caCertPem: ca.certPem,
      ca,
      binDir,
      serviceAccountKey: saKey,
      workDir,
      apiServerArgs,
      processes: { etcd, apiServer },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
