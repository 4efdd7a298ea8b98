/**
 * What a real node leaves on the host when its daemons stop (mounts, network namespaces, the bridge,
 * pod cgroups, shims), found and removed. Used by the node's own teardown, by `npm run cluster --
 * down` after a node whose process died, and by the tests that assert nothing is left behind.
 *
 * Everything is found from facts that name this node: mount points and network namespaces under its
 * run directory, shims whose command line names its containerd socket, processes inside the
 * kubelet's `kubepods` cgroups, and the bridge the CNI config names.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { BRIDGE } from "./real-node-config.ts";

const execFileAsync = promisify(execFile);

const CGROUP_ROOT = "/sys/fs/cgroup";
/** The kubelet's top-level cgroup (cgroupfs driver, cgroupsPerQOS). */
const KUBEPODS = "kubepods";

/** What is left on the host; every list empty means clean. */
export interface Leftovers {
  mounts: string[];
  bridge: string[];
  cgroups: string[];
  processes: number[];
  /** The kubelet's and kube-proxy's iptables chains ("iptables -t nat KUBE-SERVICES"). */
  iptables: string[];
}

export function isClean(l: Leftovers): boolean {
  return l.mounts.length + l.bridge.length + l.cgroups.length + l.processes.length + l.iptables.length === 0;
}

/** A short account of `l` (the first few of each kind, and how many). */
export function describeLeftovers(l: Leftovers): string {
  const some = (what: string, items: Array<string | number>) => {
    if (items.length === 0) return undefined;
    const more = items.length > 3 ? `, … (${items.length} in all)` : "";
    return `${what}: ${items.slice(0, 3).join(", ")}${more}`;
  };
  const parts = [
    some("mounts", l.mounts),
    some("bridge", l.bridge),
    // Deepest first: the last ones are the kubepods tops.
    some("cgroups", [...l.cgroups].reverse()),
    some("processes", l.processes),
    some("iptables chains", l.iptables),
  ].filter(Boolean);
  return parts.length > 0 ? parts.join("; ") : "nothing";
}

/** Mount points at or under `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  const root = path.resolve(dir);
  const unoctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map(unoctal)
    .filter((p) => p === root || p.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.split("/").length - a.split("/").length);
}

/** The kubepods cgroup directories of every v1 hierarchy (and the v2 one), deepest first. */
export function podCgroups(): string[] {
  const dirs: string[] = [];
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true });
    dirs.push(dir);
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
  };
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync(CGROUP_ROOT).map((h) => path.join(CGROUP_ROOT, h));
  } catch {
    return [];
  }
  for (const h of [CGROUP_ROOT, ...hierarchies]) {
    const top = path.join(h, KUBEPODS);
    try {
      walk(top);
    } catch {
      // no kubepods in this hierarchy (or it vanished meanwhile)
    }
  }
  return dirs.sort((a, b) => b.split("/").length - a.split("/").length);
}

function pidsOf(cgroupDir: string): number[] {
  try {
    return readFileSync(path.join(cgroupDir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** containerd shims whose command line names `socket` (the node's containerd). */
export function shimsOf(socket: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const exe = path.basename(readlinkSync(`/proc/${entry}/exe`));
      if (exe.startsWith("containerd-shim") && argv.includes(socket)) pids.push(Number(entry));
    } catch {
      // exited meanwhile, or not ours to read
    }
  }
  return pids;
}

/**
 * The chains of a node: the kubelet's (canaries, localnet firewall, iptables-mode hint) and
 * kube-proxy's (KUBE-SERVICES, KUBE-SVC-…, KUBE-SEP-…, KUBE-POSTROUTING, …) all start so.
 */
const CHAIN_PREFIX = "KUBE-";
const isNodeChain = (chain: string) => chain.startsWith(CHAIN_PREFIX);
const IPTABLES = ["iptables", "ip6tables"];
const TABLES = ["filter", "nat", "mangle"];

function iptablesRules(bin: string, table: string): string[] {
  try {
    return execFileSync(bin, ["-w", "-t", table, "-S"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).split("\n");
  } catch {
    return []; // no such binary or table
  }
}

/** The node's chains present now, as "iptables -t TABLE CHAIN". */
export function nodeChains(): string[] {
  return IPTABLES.flatMap((bin) =>
    TABLES.flatMap((table) =>
      iptablesRules(bin, table)
        .map((rule) => /^-N (\S+)$/.exec(rule)?.[1])
        .filter((chain): chain is string => chain !== undefined && isNodeChain(chain))
        .map((chain) => `${bin} -t ${table} ${chain}`),
    ),
  );
}

/**
 * Deletes the jumps from built-in (or other) chains to the node's chains, then flushes them all, then
 * deletes them (they jump to each other: none can go while another still refers to it).
 */
async function removeNodeChains(): Promise<void> {
  for (const bin of IPTABLES) {
    for (const table of TABLES) {
      const rules = iptablesRules(bin, table);
      const iptables = (...args: string[]) =>
        execFileAsync(bin, ["-w", "-t", table, ...args]).catch(() => undefined);
      for (const rule of rules) {
        const jump = /^-A (\S+) (.*-j (\S+))$/.exec(rule);
        if (jump?.[3] && isNodeChain(jump[3]) && !isNodeChain(jump[1] as string)) {
          await iptables("-D", jump[1] as string, ...splitRule(jump[2] as string));
        }
      }
      const chains = rules
        .map((rule) => /^-N (\S+)$/.exec(rule)?.[1])
        .filter((chain): chain is string => chain !== undefined && isNodeChain(chain));
      for (const chain of chains) await iptables("-F", chain);
      for (const chain of chains) await iptables("-X", chain);
    }
  }
}

/** The words of an `iptables -S` rule (double-quoted words, e.g. comments, kept whole). */
function splitRule(rule: string): string[] {
  return (rule.match(/"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^"(.*)"$/, "$1"));
}

function bridgeExists(): boolean {
  return existsSync(`/sys/class/net/${BRIDGE}`);
}

/** What the node of `runDir` (containerd socket `socket`) left on the host. */
export function leftovers(runDir: string, socket: string): Leftovers {
  const cgroups = podCgroups();
  return {
    mounts: mountsUnder(runDir),
    bridge: bridgeExists() ? [BRIDGE] : [],
    cgroups,
    processes: [...new Set([...cgroups.flatMap(pidsOf), ...shimsOf(socket)])],
    iptables: nodeChains(),
  };
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Removes what the node of `runDir` left behind, in dependency order: containers and shims
 * (SIGKILL: their daemons are gone), mounts under the run directory (lazily: a mount still busy goes
 * when its last user does; network namespaces are among them), the bridge, the kubelet's and kube-proxy's
 * iptables chains, the empty pod cgroups.
 * Returns what could not be removed.
 */
export async function cleanHost(runDir: string, socket: string): Promise<Leftovers> {
  for (const pid of leftovers(runDir, socket).processes) kill(pid);
  await new Promise((r) => setTimeout(r, 200));
  for (const mount of mountsUnder(runDir)) {
    await execFileAsync("umount", ["-l", mount]).catch(() => undefined);
  }
  if (bridgeExists()) await execFileAsync("ip", ["link", "delete", BRIDGE]).catch(() => undefined);
  await removeNodeChains();
  for (let attempt = 0; attempt < 10; attempt++) {
    for (const dir of podCgroups()) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty yet (a process still exiting): next attempt
      }
    }
    if (podCgroups().length === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return leftovers(runDir, socket);
}
