/**
 * Services for the real node's pods, as small as the tests need (no kube-proxy, no CoreDNS):
 * - cluster IPs: iptables DNAT rules, resynced from Services and EndpointSlices twice a second, to a
 *   ready endpoint (the `kubernetes` Service: to the API server at the pods' gateway); pod → Service →
 *   pod on the same bridge is masqueraded so that the reply comes back through the host;
 * - names: a DNS server on the node's address that answers A queries for `<svc>.<ns>.svc` and
 *   `<svc>.<ns>.svc.cluster.local` with the cluster IP, and NXDOMAIN for anything else (the pods'
 *   resolv.conf points at it: kubelet clusterDNS).
 * The chains are named in real-node-host.ts, whose cleanup removes them.
 */
import { execFile, spawn } from "node:child_process";
import dgram from "node:dgram";
import { promisify } from "node:util";
import { type CoreV1Api, DiscoveryV1Api, type KubeConfig } from "@kubernetes/client-node";
import { POD_SUBNET } from "./real-node-config.ts";
import { POSTROUTING_CHAIN, SERVICES_CHAIN } from "./real-node-host.ts";

const execFileAsync = promisify(execFile);
export const CLUSTER_DOMAIN = "cluster.local";
const SYNC_MS = 500;

interface ServicePort {
  clusterIP: string;
  port: number;
  protocol: string;
  endpoints: Array<{ ip: string; port: number }>;
}

export interface ServiceProxy {
  stop(): Promise<void>;
}

/** The DNAT rules of `ports` (several endpoints: picked at random, like kube-proxy's iptables mode). */
export function serviceRules(ports: ServicePort[]): string[] {
  const rules: string[] = [];
  for (const p of ports) {
    const match = `-d ${p.clusterIP}/32 -p ${p.protocol.toLowerCase()} --dport ${p.port}`;
    p.endpoints.forEach((e, i) => {
      const left = p.endpoints.length - i;
      const pick = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(5)}` : "";
      rules.push(`-A ${SERVICES_CHAIN} ${match}${pick} -j DNAT --to-destination ${e.ip}:${e.port}`);
    });
  }
  return rules;
}

/** The Services' ports with their ready endpoints, and the DNS names of their cluster IPs. */
async function readServices(
  core: CoreV1Api,
  discovery: DiscoveryV1Api,
  apiServer: { ip: string; port: number },
): Promise<{ ports: ServicePort[]; names: Map<string, string> }> {
  const [services, slices] = await Promise.all([
    core.listServiceForAllNamespaces(),
    discovery.listEndpointSliceForAllNamespaces(),
  ]);
  const ports: ServicePort[] = [];
  const names = new Map<string, string>();
  for (const svc of services.items) {
    const { name, namespace } = svc.metadata ?? {};
    const clusterIP = svc.spec?.clusterIP;
    if (!name || !namespace || !clusterIP || clusterIP === "None") continue;
    names.set(`${name}.${namespace}.svc`, clusterIP);
    names.set(`${name}.${namespace}.svc.${CLUSTER_DOMAIN}`, clusterIP);
    const mine = slices.items.filter(
      (s) =>
        s.metadata?.namespace === namespace && s.metadata?.labels?.["kubernetes.io/service-name"] === name,
    );
    for (const sp of svc.spec?.ports ?? []) {
      const isApiServer = name === "kubernetes" && namespace === "default";
      const endpoints = isApiServer
        ? [apiServer]
        : mine.flatMap((s) => {
            const target = s.ports?.find((p) => (p.name ?? "") === (sp.name ?? ""))?.port;
            if (target === undefined) return [];
            return s.endpoints
              .filter((e) => e.conditions?.ready !== false)
              .flatMap((e) => e.addresses.map((ip) => ({ ip, port: target })));
          });
      ports.push({ clusterIP, port: sp.port, protocol: sp.protocol ?? "TCP", endpoints });
    }
  }
  return { ports, names };
}

/** Replaces the Services chain's rules in one iptables-restore (a declared chain is flushed). */
async function applyRules(rules: string[]): Promise<void> {
  const input = ["*nat", `:${SERVICES_CHAIN} - [0:0]`, ...rules, "COMMIT", ""].join("\n");
  await new Promise<void>((resolve, reject) => {
    const child = spawn("iptables-restore", ["-w", "--noflush"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`iptables-restore: ${stderr}`))));
    child.stdin.end(input);
  });
}

/** The chains and their jumps (PREROUTING → Services; POSTROUTING → masquerade pod → Service → pod). */
async function createChains(): Promise<void> {
  const nat = (...args: string[]) => execFileAsync("iptables", ["-w", "-t", "nat", ...args]);
  await nat("-N", SERVICES_CHAIN);
  await nat("-A", "PREROUTING", "-j", SERVICES_CHAIN);
  await nat("-N", POSTROUTING_CHAIN);
  await nat("-A", "POSTROUTING", "-j", POSTROUTING_CHAIN);
  const hairpin = ["-s", POD_SUBNET, "-d", POD_SUBNET, "-m", "conntrack", "--ctstate", "DNAT"];
  await nat("-A", POSTROUTING_CHAIN, ...hairpin, "-j", "MASQUERADE");
}

/** The name of the first question of a DNS query, its type, and where the question ends. */
export function parseQuestion(msg: Buffer): { name: string; qtype: number; end: number } | undefined {
  const labels: string[] = [];
  let i = 12;
  if (msg.length < 17 || msg.readUInt16BE(4) !== 1) return undefined;
  while (i < msg.length && msg[i] !== 0) {
    const len = msg[i] as number;
    if (len > 63 || i + 1 + len > msg.length) return undefined;
    labels.push(msg.toString("latin1", i + 1, i + 1 + len));
    i += 1 + len;
  }
  if (i + 5 > msg.length) return undefined;
  return { name: labels.join(".").toLowerCase(), qtype: msg.readUInt16BE(i + 1), end: i + 5 };
}

/** The reply to `query`: its question, and an A record for `ip` (none: NXDOMAIN, or no data for non-A). */
export function dnsReply(query: Buffer, q: { qtype: number; end: number }, ip: string | undefined): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  const rd = query.readUInt16BE(2) & 0x0100;
  const answer = ip !== undefined && q.qtype === 1;
  header.writeUInt16BE(0x8400 | 0x0080 | rd | (ip === undefined ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answer ? 1 : 0, 6);
  const question = query.subarray(12, q.end);
  if (!answer) return Buffer.concat([header, question]);
  const record = Buffer.alloc(16);
  record.writeUInt16BE(0xc00c, 0);
  record.writeUInt16BE(1, 2);
  record.writeUInt16BE(1, 4);
  record.writeUInt32BE(5, 6);
  record.writeUInt16BE(4, 10);
  ip.split(".").forEach((octet, k) => {
    record[12 + k] = Number(octet);
  });
  return Buffer.concat([header, question, record]);
}

/** A DNS server on `address`:`port` answering from `names` (name → IPv4). */
export function startDns(
  address: string,
  names: () => Map<string, string>,
  port = 53,
): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg, peer) => {
    const q = parseQuestion(msg);
    if (q === undefined) return;
    socket.send(dnsReply(msg, q, names().get(q.name)), peer.port, peer.address);
  });
  return new Promise((resolve, reject) => {
    socket.once("error", (err) =>
      reject(new Error(`the Services' DNS server cannot listen on ${address}:${port} (${err.message})`)),
    );
    socket.bind(port, address, () => resolve(socket));
  });
}

/** Starts the Services' iptables sync and the DNS server on `dnsAddress`:53. */
export async function startServiceProxy(
  kubeConfig: KubeConfig,
  core: CoreV1Api,
  dnsAddress: string,
  apiServer: { ip: string; port: number },
): Promise<ServiceProxy> {
  const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
  await createChains();
  let names = new Map<string, string>();
  let applied = "";
  const sync = async () => {
    const state = await readServices(core, discovery, apiServer);
    names = state.names;
    const rules = serviceRules(state.ports);
    if (rules.join("\n") !== applied) {
      await applyRules(rules);
      applied = rules.join("\n");
    }
  };
  await sync();
  const dns = await startDns(dnsAddress, () => names);
  let stopped = false;
  let syncing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    if (!stopped) syncing = sync().catch(() => undefined);
  }, SYNC_MS);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await syncing;
      await new Promise<void>((r) => dns.close(() => r()));
    },
  };
}
