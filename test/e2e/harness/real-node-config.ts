/**
 * The configuration files of the real node (containerd, kubelet, CNI), pure: each setting that these
 * machines need is explained once here (see notes/real-node.md for how they were found).
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";

/** The node's name (the kubelet's client certificate is CN=system:node:<name>). */
export const NODE_NAME = "sm-injector-node";
/** The Linux bridge the CNI bridge plugin creates (teardown deletes it). */
export const BRIDGE = "smi-cni0";
/** The pods' network; its first address is the bridge, the pods' gateway to the host. */
export const POD_SUBNET = "10.244.0.0/24";
export const POD_GATEWAY = "10.244.0.1";
/** The CNI plugins of Debian's containernetworking-plugins. */
export const CNI_BIN_DIR = "/usr/lib/cni";
/** Debian's runc (crun does not work on these hosts: hybrid cgroup layout). */
export const RUNC = "/usr/sbin/runc";

/** The paths of one node under its run directory. */
export interface NodePaths {
  runDir: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  containerdConfig: string;
  cniConfDir: string;
  cniIpamDir: string;
  kubeletRoot: string;
  kubeletConfig: string;
  kubeletKubeconfig: string;
  podLogsDir: string;
  pki: string;
  kubeProxyConfig: string;
  corefile: string;
}

export function nodePaths(runDir: string): NodePaths {
  const at = (...p: string[]) => path.join(runDir, ...p);
  return {
    runDir,
    containerdRoot: at("containerd", "root"),
    containerdState: at("containerd", "state"),
    containerdSocket: at("containerd", "containerd.sock"),
    containerdConfig: at("containerd", "config.toml"),
    cniConfDir: at("cni", "net.d"),
    cniIpamDir: at("cni", "ipam"),
    kubeletRoot: at("kubelet"),
    kubeletConfig: at("kubelet-config.yaml"),
    kubeletKubeconfig: at("kubelet.kubeconfig"),
    podLogsDir: at("pod-logs"),
    pki: at("node-pki"),
    kubeProxyConfig: at("kube-proxy-config.yaml"),
    corefile: at("Corefile"),
  };
}

/**
 * The node's address: the IPv4 address of the default-route interface (the kubelet refuses a
 * loopback node IP), else the first non-internal IPv4 address.
 */
export function nodeIP(): string {
  const interfaces = os.networkInterfaces();
  let dev: string | undefined;
  try {
    const routes = JSON.parse(
      execFileSync("ip", ["-j", "-4", "route", "show", "default"], { encoding: "utf8" }),
    );
    dev = routes[0]?.dev;
  } catch {
    // no `ip`: fall back to the first external address
  }
  const candidates = dev ? [interfaces[dev] ?? []] : Object.values(interfaces);
  for (const addrs of candidates) {
    const v4 = addrs?.find((a) => a.family === "IPv4" && !a.internal);
    if (v4) return v4.address;
  }
  throw new Error("no non-loopback IPv4 address found for the node (the kubelet refuses 127.0.0.1)");
}

/** containerd 2.x (config version 4: servers and CRI settings are plugins), for these hosts. */
export function containerdConfigToml(p: NodePaths, sandboxImage: string): string {
  const q = (s: string) => JSON.stringify(s);
  return `version = 4
root = ${q(p.containerdRoot)}
state = ${q(p.containerdState)}

# Version 4 ignores a top-level [grpc]: the sockets are the server plugins' settings.
[plugins.'io.containerd.server.v1.grpc']
  address = ${q(p.containerdSocket)}
[plugins.'io.containerd.server.v1.ttrpc']
  address = ${q(`${p.containerdSocket}.ttrpc`)}

[plugins.'io.containerd.cri.v1.runtime']
  # Root here has no CAP_SYS_RESOURCE: lowering oom_score_adj fails every sandbox
  # ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  # Network namespaces under the run directory (not /var/run/netns): teardown finds them there.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = ${q(RUNC)}
        # runc's state under the run directory (default /run/containerd/runc).
        Root = ${q(path.join(p.containerdState, "runc"))}
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [${q(CNI_BIN_DIR)}]
    conf_dir = ${q(p.cniConfDir)}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  # Nothing can be pulled: the sandbox image is imported, and pinned so that it is never collected.
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ${q(sandboxImage)}
`;
}

/** bridge + host-local + loopback: enough for node Ready and for pods that reach the host. */
export function cniConflist(p: NodePaths): string {
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "sm-injector",
      plugins: [
        {
          type: "bridge",
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: POD_SUBNET, gateway: POD_GATEWAY }]],
            routes: [{ dst: "0.0.0.0/0" }],
            // Leases under the run directory, not /var/lib/cni/networks.
            dataDir: p.cniIpamDir,
          },
        },
        { type: "loopback" },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeletSettings {
  address: string;
  port: number;
  healthzPort: number;
  clientCAFile: string;
  tlsCertFile: string;
  tlsPrivateKeyFile: string;
  /** The pods' nameserver (CoreDNS on the node's address: corefile()). */
  clusterDNS: string;
}

/** The KubeletConfiguration for these hosts (each departure from the defaults says why). */
export function kubeletConfigYaml(p: NodePaths, s: KubeletSettings): string {
  const config = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: s.address,
    port: s.port,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: s.healthzPort,
    tlsCertFile: s.tlsCertFile,
    tlsPrivateKeyFile: s.tlsPrivateKeyFile,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: s.clientCAFile },
    },
    authorization: { mode: "Webhook" },
    containerRuntimeEndpoint: `unix://${p.containerdSocket}`,
    // cgroup v1 host: refused by default since 1.35.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    // No CAP_SYS_RESOURCE: the kubelet may not lower its own oom_score_adj.
    oomScoreAdj: 0,
    failSwapOn: false,
    podLogsDir: p.podLogsDir,
    // Imported images cannot be pulled again: never collect them.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // A shared disk and memory: do not evict test pods because a neighbour filled them.
    evictionHard: { "memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
    resolvConf: "/etc/resolv.conf",
    clusterDomain: CLUSTER_DOMAIN,
    clusterDNS: [s.clusterDNS],
    serializeImagePulls: false,
    // Status changes reach the API server sooner (tests wait on them).
    syncFrequency: "10s",
    fileCheckFrequency: "10s",
    nodeStatusUpdateFrequency: "5s",
    shutdownGracePeriod: "0s",
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** The cluster's DNS domain (kubelet clusterDomain, CoreDNS's kubernetes zone). */
export const CLUSTER_DOMAIN = "cluster.local";

export interface KubeProxySettings {
  kubeconfig: string;
  healthzPort: number;
  metricsPort: number;
}

/**
 * kube-proxy in iptables mode, changing nothing host-wide on a machine shared with other work: its
 * conntrack settings are left alone (0; the defaults would set nf_conntrack_tcp_timeout_established
 * to 1 day and close_wait to 1 h for the whole host), and node ports are served on the node's address
 * only (localhost node ports would set net.ipv4.conf.all.route_localnet=1 and leave it so).
 */
export function kubeProxyConfigYaml(s: KubeProxySettings): string {
  const config = {
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "iptables",
    clientConnection: { kubeconfig: s.kubeconfig },
    hostnameOverride: NODE_NAME,
    // Traffic from outside the pods' network to a cluster IP (the API server calling a webhook's
    // Service) is masqueraded, so that the reply comes back through the host.
    clusterCIDR: POD_SUBNET,
    healthzBindAddress: `127.0.0.1:${s.healthzPort}`,
    metricsBindAddress: `127.0.0.1:${s.metricsPort}`,
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
    nodePortAddresses: ["primary"],
    // Endpoint changes (a webhook scaled to zero, a rolling update) reach the rules at once.
    iptables: { minSyncPeriod: "0s", syncPeriod: "30s", localhostNodePorts: false },
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

export interface CorefileSettings {
  /** The address it serves on (the kubelet's clusterDNS). */
  address: string;
  kubeconfig: string;
  /** The `ready` plugin's port on loopback (200 once the kubernetes plugin has synced). */
  readyPort: number;
}

/**
 * CoreDNS as the cluster DNS: the kubernetes plugin answers for the Services (and pods) of
 * CLUSTER_DOMAIN. No forward: the pods need no other names (and the hosts reach no resolver), and no
 * cache: a Service created after a lookup must resolve at once.
 */
export function corefile(s: CorefileSettings): string {
  return `.:53 {
    bind ${s.address}
    errors
    ready 127.0.0.1:${s.readyPort}
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        kubeconfig ${s.kubeconfig}
        pods insecure
    }
}
`;
}
