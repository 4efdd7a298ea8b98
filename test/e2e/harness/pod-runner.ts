/**
 * A tiny kubelet for the e2e tests: runs a pod AS THE API SERVER STORED IT as local processes, so the
 * injected init container and the (wrapped) app command are exercised for real without a container
 * runtime.
 *
 * What it does, like kubelet + a container runtime would:
 * - volumes: `emptyDir` → a directory on a tmpfs (/dev/shm), mode 0777, and with the pod's fsGroup
 *   group-owned by it with the setgid bit; `projected` → a directory holding the files of its
 *   sources: `serviceAccountToken` from the TokenRequest API (audience, expiration, bound to the pod),
 *   `configMap` read from the API, `downwardAPI` fieldRefs. Any other volume type is refused.
 * - each container runs in a private mount namespace (`unshare --mount --propagation private`) where
 *   every volumeMount is bind-mounted at its real mountPath (`readOnly` → remounted read-only), the
 *   image's filesystem extras (ImageConfig.binds) likewise, and `/` is remounted read-only when the
 *   container asks for `readOnlyRootFilesystem`;
 * - then `setpriv` switches to the container's effective uid/gid (container securityContext over the
 *   pod's, else the image's user), supplementary groups = fsGroup + supplementalGroups, no new
 *   privileges when `allowPrivilegeEscalation: false`, no capabilities when they drop ALL; and
 *   `env -i` gives the process exactly the container's environment (image env, then the container's
 *   `env` with `$(VAR)` expansion and fieldRefs resolved from the pod, and HOME as runc sets it), in
 *   its working directory;
 * - the command is `command`/`args` over the image's ENTRYPOINT/CMD, with kubelet's `$(VAR)`
 *   expansion.
 * - init containers run in order, each to completion; the first failure stops the pod (the app
 *   containers never start, as with restartPolicy Never). App containers then run one after the
 *   other, each to completion (in a real pod they run concurrently; these tests run short commands).
 *
 * Needs root and util-linux's `unshare`/`setpriv` (`podRunnerSupport()` says why not otherwise).
 * Mountpoint directories that do not exist on the host are created, and removed by `cleanup()`.
 */
import { type SpawnOptions, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { CoreV1Api, V1Container, V1EnvVar, V1Pod, V1Volume } from "@kubernetes/client-node";
import { terminationMessageLimit } from "../../../src/contract/fetched-versions.ts";

/** What a container image contributes: its ENTRYPOINT/CMD/ENV/WORKDIR/USER, and files (host binds). */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  /** Image ENV (the container's `env` overrides it). Default: `{ PATH: <this process's PATH> }`. */
  env?: Record<string, string>;
  workingDir?: string;
  /** Image USER (numeric); default 0. */
  user?: number;
  group?: number;
  /**
   * The home directory of that user in the image's /etc/passwd. Like runc, the runner sets HOME to it
   * when neither the image nor the container sets HOME (runc uses "/" for a user not in passwd).
   */
  home?: string;
  /** Host paths that are part of the image's filesystem, bind-mounted read-only at `containerPath`. */
  binds?: Array<{ hostPath: string; containerPath: string }>;
}

export interface RunPodOptions {
  core: CoreV1Api;
  /** The pod as stored by the API server (it must have metadata.uid: the token is bound to it). */
  pod: V1Pod;
  /** Image name → its configuration. A container whose image is missing here must set `command`. */
  images?: Record<string, ImageConfig>;
  /** Per-container deadline (default 60 s); the process group is killed after it. */
  timeoutMs?: number;
  /** Parent directory of the volumes (default /dev/shm, a tmpfs, when writable). */
  scratchRoot?: string;
  /**
   * Receives the run's cleanup before anything is created on the host, for a caller that may be
   * interrupted (Ctrl-C) while the pod runs. The same function as PodRun.cleanup (idempotent).
   */
  onCleanup?: (cleanup: () => Promise<void>) => void;
}

export interface ContainerRun {
  name: string;
  init: boolean;
  /** The argv that ran (after image defaults and `$(VAR)` expansion). */
  argv: string[];
  /** The process environment (non-secret: it comes from the pod spec). */
  env: Record<string, string>;
  uid: number;
  gid: number;
  groups: number[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  durationMs: number;
  /**
   * What the kubelet would put in the container's status: the file at terminationMessagePath
   * (default /dev/termination-log, bind-mounted from the pod's scratch directory, at most 4096
   * bytes), or with terminationMessagePolicy FallbackToLogsOnError and a failure, the log's tail.
   */
  terminationMessage: string;
}

export interface PodRun {
  /** "Succeeded": every container exited 0. "Init:Error": an init container failed, nothing after it ran. */
  phase: "Succeeded" | "Init:Error" | "Failed";
  initContainers: ContainerRun[];
  containers: ContainerRun[];
  /** Host directory backing a volume of the pod (valid until cleanup()). */
  volumeDir(name: string): string;
  /** Removes the volumes and the mountpoint directories created on the host. Idempotent. */
  cleanup(): Promise<void>;
}

const SETUP_FAILED = 125;
const SETUP_MARKER = "[pod-runner] setup failed:";

/** Why the pod runner cannot run here, or undefined when it can. */
export function podRunnerUnsupportedReason(): string | undefined {
  if (process.platform !== "linux") return "the pod runner needs Linux mount namespaces";
  if (process.getuid?.() !== 0) return "the pod runner needs root (mount namespaces, bind mounts, setpriv)";
  for (const tool of ["unshare", "setpriv", "mount", "env"]) {
    const r = spawnSync(tool, ["--version"], { stdio: "ignore" });
    if (r.error || r.status !== 0) return `util-linux/coreutils \`${tool}\` is not available`;
  }
  const probe = spawnSync(
    "unshare",
    ["--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /mnt && umount /mnt"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  if (probe.status !== 0)
    return `\`unshare --mount\` does not work here (${probe.stderr.trim() || `exit ${probe.status}`})`;
  return undefined;
}

/** Single-quotes for /bin/sh. */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** kubelet's `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion). */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== "$" || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const rest = input.slice(cursor + 1);
    let advance = 1;
    if (rest[0] === "$") {
      out += "$";
    } else if (rest[0] === "(") {
      const close = rest.indexOf(")", 1);
      if (close === -1) {
        out += "$(";
      } else {
        const name = rest.slice(1, close);
        out += lookup(name) ?? `$(${name})`;
        advance = close + 1;
      }
    } else {
      out += `$${rest[0]}`;
    }
    cursor += advance;
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}

function fieldRef(pod: V1Pod, fieldPath: string, where: string): string {
  const value: Record<string, string | undefined> = {
    "metadata.name": pod.metadata?.name,
    "metadata.namespace": pod.metadata?.namespace,
    "metadata.uid": pod.metadata?.uid,
    "spec.serviceAccountName": pod.spec?.serviceAccountName,
  };
  if (!(fieldPath in value))
    throw new Error(`${where}: fieldRef ${fieldPath} is not supported by the pod runner`);
  return value[fieldPath] ?? "";
}

/** The process environment, and the variables the spec defines (what `$(VAR)` may reference). */
function containerEnv(
  pod: V1Pod,
  c: V1Container,
  image: ImageConfig,
): { env: Record<string, string>; defined: Map<string, string> } {
  if (c.envFrom?.length) throw new Error(`container ${c.name}: envFrom is not supported by the pod runner`);
  const env: Record<string, string> = { ...(image.env ?? { PATH: process.env.PATH ?? "/usr/bin:/bin" }) };
  // kubelet: each value may reference variables defined before it (and the service variables).
  const defined = new Map<string, string>();
  for (const e of c.env ?? ([] as V1EnvVar[])) {
    let value: string;
    if (e.valueFrom) {
      if (!e.valueFrom.fieldRef || Object.keys(e.valueFrom).length !== 1)
        throw new Error(
          `container ${c.name}: env ${e.name} valueFrom ${Object.keys(e.valueFrom).join(",")} is not supported by the pod runner`,
        );
      value = fieldRef(pod, e.valueFrom.fieldRef.fieldPath, `container ${c.name}, env ${e.name}`);
    } else {
      value = expand(e.value ?? "", (n) => defined.get(n));
    }
    defined.set(e.name, value);
    env[e.name] = value;
  }
  env.HOME ??= image.home ?? "/";
  return { env, defined };
}

function commandOf(c: V1Container, image: ImageConfig | undefined, defined: Map<string, string>): string[] {
  let argv: string[];
  if (c.command?.length) argv = [...c.command, ...(c.args ?? [])];
  else if (image) argv = [...(image.entrypoint ?? []), ...(c.args ?? image.cmd ?? [])];
  else throw new Error(`container ${c.name}: no command and no ImageConfig for image ${c.image}`);
  if (argv.length === 0) throw new Error(`container ${c.name}: nothing to run`);
  return argv.map((a) => expand(a, (n) => defined.get(n)));
}

interface Identity {
  uid: number;
  gid: number;
  groups: number[];
}

function identityOf(pod: V1Pod, c: V1Container, image: ImageConfig): Identity {
  const podSc = pod.spec?.securityContext;
  const sc = c.securityContext;
  const uid = sc?.runAsUser ?? podSc?.runAsUser ?? image.user ?? 0;
  const gid = sc?.runAsGroup ?? podSc?.runAsGroup ?? image.group ?? 0;
  if ((sc?.runAsNonRoot ?? podSc?.runAsNonRoot) && uid === 0)
    throw new Error(`container ${c.name}: runAsNonRoot is set but the container would run as root (uid 0)`);
  const groups = [
    ...(podSc?.fsGroup !== undefined ? [podSc.fsGroup] : []),
    ...(podSc?.supplementalGroups ?? []),
  ];
  return { uid, gid, groups: [...new Set(groups)] };
}

async function scratchRoot(): Promise<string> {
  try {
    await writeFile("/dev/shm/.sm-injector-probe", "");
    await rm("/dev/shm/.sm-injector-probe");
    return "/dev/shm";
  } catch {
    return (await import("node:os")).tmpdir();
  }
}

/** Prepares every volume of the pod under `root`; returns name → host directory. */
async function prepareVolumes(core: CoreV1Api, pod: V1Pod, root: string): Promise<Map<string, string>> {
  const dirs = new Map<string, string>();
  const fsGroup = pod.spec?.securityContext?.fsGroup;
  const namespace = pod.metadata?.namespace ?? "default";
  for (const v of pod.spec?.volumes ?? ([] as V1Volume[])) {
    const dir = path.join(root, "volumes", v.name);
    await mkdir(dir, { recursive: true });
    dirs.set(v.name, dir);
    if (v.emptyDir) {
      // kubelet: 0777, and with fsGroup the group owns it with setgid (files inherit the group).
      if (fsGroup !== undefined) {
        await chown(dir, 0, fsGroup);
        await chmod(dir, 0o2777);
      } else {
        await chmod(dir, 0o777);
      }
    } else if (v.projected) {
      const mode = v.projected.defaultMode ?? 0o644;
      const files: Array<{ file: string; content: string; mode?: number }> = [];
      for (const source of v.projected.sources ?? []) {
        if (source.serviceAccountToken) {
          const sat = source.serviceAccountToken;
          const tr = await core.createNamespacedServiceAccountToken({
            namespace,
            name: pod.spec?.serviceAccountName ?? "default",
            body: {
              spec: {
                audiences: sat.audience ? [sat.audience] : [],
                expirationSeconds: sat.expirationSeconds ?? 3600,
                boundObjectRef: {
                  kind: "Pod",
                  apiVersion: "v1",
                  name: pod.metadata?.name,
                  uid: pod.metadata?.uid,
                },
              },
            },
          });
          const token = tr.status?.token;
          if (!token) throw new Error(`volume ${v.name}: TokenRequest returned no token`);
          files.push({ file: sat.path, content: token });
        } else if (source.configMap) {
          const ref = source.configMap;
          let data: Record<string, string> | undefined;
          try {
            data = (await core.readNamespacedConfigMap({ namespace, name: ref.name ?? "" })).data ?? {};
          } catch (e) {
            if ((e as { code?: number }).code !== 404 || !ref.optional) throw e;
          }
          if (data === undefined) continue;
          const items = ref.items ?? Object.keys(data).map((key) => ({ key, path: key, mode: undefined }));
          for (const item of items) {
            const content = data[item.key];
            if (content === undefined)
              throw new Error(`volume ${v.name}: configMap ${ref.name} has no key ${item.key}`);
            files.push({ file: item.path, content, ...(item.mode !== undefined && { mode: item.mode }) });
          }
        } else if (source.downwardAPI) {
          for (const item of source.downwardAPI.items ?? []) {
            if (!item.fieldRef)
              throw new Error(`volume ${v.name}: downwardAPI ${item.path}: only fieldRef is supported`);
            files.push({
              file: item.path,
              content: fieldRef(pod, item.fieldRef.fieldPath, `volume ${v.name}`),
              ...(item.mode !== undefined && { mode: item.mode }),
            });
          }
        } else {
          throw new Error(
            `volume ${v.name}: projected source ${Object.keys(source).join(",")} is not supported`,
          );
        }
      }
      for (const f of files) {
        const target = path.join(dir, f.file);
        if (!target.startsWith(`${dir}/`)) throw new Error(`volume ${v.name}: bad path ${f.file}`);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, f.content);
        if (fsGroup !== undefined) await chown(target, 0, fsGroup);
        await chmod(target, f.mode ?? mode);
      }
      await chmod(dir, 0o755);
    } else {
      const kind = Object.keys(v).filter((k) => k !== "name");
      throw new Error(`volume ${v.name}: ${kind.join(",")} volumes are not supported by the pod runner`);
    }
  }
  return dirs;
}

/** The missing ancestors of `p` (outermost first), i.e. what `mkdir -p p` would create. */
function missingDirs(p: string): string[] {
  const missing: string[] = [];
  for (let d = path.resolve(p); !existsSync(d); d = path.dirname(d)) missing.unshift(d);
  return missing;
}

function runProcess(
  argv: string[],
  options: SpawnOptions,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: Buffer; stderr: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      ...options,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on("data", (c: Buffer) => stdout.push(c));
    child.stderr?.on("data", (c: Buffer) => stderr.push(c));
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) });
    });
  });
}

async function runContainer(
  pod: V1Pod,
  c: V1Container,
  init: boolean,
  images: Record<string, ImageConfig>,
  volumes: Map<string, string>,
  created: { dirs: string[]; files: string[] },
  timeoutMs: number,
  root: string,
): Promise<ContainerRun> {
  const createdDirs = created.dirs;
  const image = (c.image !== undefined ? images[c.image] : undefined) ?? {};
  const { env, defined } = containerEnv(pod, c, image);
  const argv = commandOf(c, c.image !== undefined ? images[c.image] : undefined, defined);
  const id = identityOf(pod, c, image);
  const sc = c.securityContext;

  const mounts: Array<{ source: string; target: string; readOnly: boolean }> = [];
  for (const b of image.binds ?? [])
    mounts.push({ source: b.hostPath, target: b.containerPath, readOnly: true });
  for (const m of c.volumeMounts ?? []) {
    const source = volumes.get(m.name);
    if (source === undefined) throw new Error(`container ${c.name}: volumeMount ${m.name} has no volume`);
    if (m.subPath || m.subPathExpr)
      throw new Error(`container ${c.name}: subPath is not supported by the pod runner`);
    mounts.push({ source, target: m.mountPath, readOnly: m.readOnly === true });
  }
  // Parents before children, like the container runtimes sort mounts.
  mounts.sort((a, b) => a.target.split("/").length - b.target.split("/").length);
  // The termination message file, writable by any user (as the kubelet makes it), mounted last.
  const terminationFile = path.join(root, `termination-${init ? "init" : "app"}-${c.name}`);
  await writeFile(terminationFile, "");
  await chmod(terminationFile, 0o666);
  const terminationPath = c.terminationMessagePath ?? "/dev/termination-log";
  if (!existsSync(terminationPath)) {
    for (const d of missingDirs(path.dirname(terminationPath)))
      if (!createdDirs.includes(d)) createdDirs.push(d);
    if (!created.files.includes(terminationPath)) created.files.push(terminationPath);
  }

  const script: string[] = [`fail() { echo ${q(SETUP_MARKER)} "$*" >&2; exit ${SETUP_FAILED}; }`, "set -u"];
  for (const m of mounts) {
    for (const d of missingDirs(m.target)) if (!createdDirs.includes(d)) createdDirs.push(d);
    script.push(`mkdir -p ${q(m.target)} || fail mkdir ${q(m.target)}`);
    script.push(`mount --bind ${q(m.source)} ${q(m.target)} || fail bind ${q(m.target)}`);
    if (m.readOnly) script.push(`mount -o remount,bind,ro ${q(m.target)} || fail remount ro ${q(m.target)}`);
  }
  script.push(
    `mkdir -p ${q(path.dirname(terminationPath))} && { [ -e ${q(terminationPath)} ] || : > ${q(terminationPath)}; } || fail termination file`,
    `mount --bind ${q(terminationFile)} ${q(terminationPath)} || fail bind ${q(terminationPath)}`,
  );
  if (sc?.readOnlyRootFilesystem) script.push("mount -o remount,bind,ro / || fail remount ro /");
  const setpriv = [
    "setpriv",
    `--reuid=${id.uid}`,
    `--regid=${id.gid}`,
    id.groups.length > 0 ? `--groups=${id.groups.join(",")}` : "--clear-groups",
    ...(sc?.allowPrivilegeEscalation === false ? ["--no-new-privs"] : []),
    ...(sc?.capabilities?.drop?.includes("ALL") ? ["--inh-caps=-all", "--bounding-set=-all"] : []),
    "--",
  ];
  const names = Object.keys(env);
  for (const n of names)
    if (n.includes("=") || n === "") throw new Error(`container ${c.name}: bad env name ${n}`);
  if (argv[0]?.includes("="))
    throw new Error(`container ${c.name}: command ${argv[0]} cannot be run through env(1)`);
  const envArgs = [
    "env",
    "-i",
    "-C",
    c.workingDir ?? image.workingDir ?? "/",
    ...names.map((n) => `${n}=${env[n]}`),
  ];
  script.push(`exec ${[...setpriv, ...envArgs, ...argv].map(q).join(" ")}`);

  const t0 = performance.now();
  const r = await runProcess(
    ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script.join("\n")],
    { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, cwd: "/" },
    timeoutMs,
  );
  const durationMs = Math.round(performance.now() - t0);
  if (r.code === SETUP_FAILED && r.stderr.toString("utf8").includes(SETUP_MARKER))
    throw new Error(`container ${c.name}: ${r.stderr.toString("utf8").trim()}`);
  const containers = (pod.spec?.containers?.length ?? 0) + (pod.spec?.initContainers?.length ?? 0);
  const limit = terminationMessageLimit(containers);
  let terminationMessage = (await readFile(terminationFile)).subarray(0, limit).toString("utf8");
  if (terminationMessage === "" && r.code !== 0 && c.terminationMessagePolicy === "FallbackToLogsOnError") {
    const log = Buffer.concat([r.stdout, r.stderr]).toString("utf8").split("\n").slice(-80).join("\n");
    terminationMessage = log.slice(-limit);
  }
  return {
    name: c.name,
    init,
    argv,
    env,
    uid: id.uid,
    gid: id.gid,
    groups: id.groups,
    exitCode: r.code,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    durationMs,
    terminationMessage,
  };
}

/** Runs `pod`'s init containers then its containers; see the module comment. */
export async function runPod(opts: RunPodOptions): Promise<PodRun> {
  const { pod } = opts;
  if (!pod.metadata?.uid) throw new Error("runPod needs the pod as stored by the API server (metadata.uid)");
  const images = opts.images ?? {};
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const root = await mkdtemp(path.join(opts.scratchRoot ?? (await scratchRoot()), "sm-injector-pod-"));
  const created = { dirs: [] as string[], files: [] as string[] };
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      for (const f of created.files) await unlink(f).catch(() => {});
      for (const d of [...created.dirs].reverse()) await rmdir(d).catch(() => {});
      await rm(root, { recursive: true, force: true });
    })();
    return cleaned;
  };
  opts.onCleanup?.(cleanup);
  try {
    const volumes = await prepareVolumes(opts.core, pod, root);
    const result: PodRun = {
      phase: "Succeeded",
      initContainers: [],
      containers: [],
      volumeDir(name) {
        const d = volumes.get(name);
        if (d === undefined) throw new Error(`the pod has no volume ${name}`);
        return d;
      },
      cleanup,
    };
    for (const c of pod.spec?.initContainers ?? []) {
      const run = await runContainer(pod, c, true, images, volumes, created, timeoutMs, root);
      result.initContainers.push(run);
      if (run.exitCode !== 0) {
        result.phase = "Init:Error";
        return result;
      }
    }
    for (const c of pod.spec?.containers ?? []) {
      const run = await runContainer(pod, c, false, images, volumes, created, timeoutMs, root);
      result.containers.push(run);
      if (run.exitCode !== 0) result.phase = "Failed";
    }
    return result;
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * Writes the pod's status as the kubelet would after this run, through the status subresource: init
 * containers terminated (exit code, reason, termination message), app containers as still running
 * (phase Running), or the pod failed when an init container did.
 */
export async function reportStatus(core: CoreV1Api, pod: V1Pod, run: PodRun): Promise<V1Pod> {
  const now = new Date();
  const terminated = (c: ContainerRun) => ({
    name: c.name,
    image: pod.spec?.initContainers?.find((x) => x.name === c.name)?.image ?? "",
    imageID: "",
    ready: false,
    restartCount: 0,
    state: {
      terminated: {
        exitCode: c.exitCode ?? 137,
        reason: c.exitCode === 0 ? "Completed" : "Error",
        message: c.terminationMessage || undefined,
        startedAt: now,
        finishedAt: now,
      },
    },
  });
  const ok = run.phase !== "Init:Error";
  const body: V1Pod = {
    ...pod,
    status: {
      phase: ok ? "Running" : "Pending",
      startTime: now,
      initContainerStatuses: run.initContainers.map(terminated),
      containerStatuses: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        image: c.image ?? "",
        imageID: "",
        ready: ok,
        restartCount: 0,
        state: ok ? { running: { startedAt: now } } : { waiting: { reason: "PodInitializing" } },
      })),
    },
  };
  const name = pod.metadata?.name as string;
  const namespace = pod.metadata?.namespace as string;
  return core.replaceNamespacedPodStatus({ name, namespace, body });
}
