/**
 * The cluster an e2e test runs on, so that one suite runs on any cluster with the same code and
 * assertions. $SM_INJECTOR_E2E_CLUSTER chooses:
 *
 *  - `local` (the default, CI): the real one-node cluster of real-node.ts, started for the test file
 *    and stopped after it; images go into its containerd with `ctr images import`; pods reach host
 *    services at the CNI bridge's gateway.
 *  - `kubeconfig` (`npm run test:kind`, scripts/kind-e2e.sh): the cluster $KUBECONFIG names; images
 *    are loaded by $SM_INJECTOR_E2E_LOAD_IMAGE with the OCI archive appended (e.g. `kind load
 *    image-archive --name sm-injector-e2e`); pods reach host services at $SM_INJECTOR_E2E_HOST_ADDRESS
 *    (for kind, the `kind` Docker network's gateway). What the tests created is theirs to delete.
 */
import { execFile } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { ensureBinaries } from "./controlplane.ts";
import { busyboxImage, isAlive, type RealNode, readNodeLock, useRealNode } from "./real-node.ts";

const execFileAsync = promisify(execFile);

export type ClusterKind = "local" | "kubeconfig";

export interface E2ECluster {
  kind: ClusterKind;
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  /** The address pods reach a service on this host at (it must listen on 0.0.0.0). */
  hostAddressForPods: string;
  /** Makes the image in the OCI archive runnable on the cluster's nodes under `name` (never pulled). */
  loadImage(archive: string, name: string): Promise<void>;
  /** The tests' busybox image (scripts/build-binaries.sh busybox-image), loaded. */
  loadBusybox(): Promise<string>;
  /** The local node, when the cluster is one (tests of the node itself need it). */
  realNode?: RealNode;
}

export interface ClusterSettings {
  kind: ClusterKind;
  kubeconfig?: string;
  loadImage?: string[];
  hostAddress?: string;
}

/** The cluster the environment asks for, or why it cannot be used (a clear error, not a skip). */
export function clusterSettings(env: NodeJS.ProcessEnv = process.env): ClusterSettings {
  const kind = env.SM_INJECTOR_E2E_CLUSTER ?? "local";
  if (kind === "local") return { kind };
  if (kind !== "kubeconfig")
    throw new Error(`SM_INJECTOR_E2E_CLUSTER=${kind}: use local (the default) or kubeconfig`);
  const missing = ["KUBECONFIG", "SM_INJECTOR_E2E_LOAD_IMAGE", "SM_INJECTOR_E2E_HOST_ADDRESS"].filter(
    (v) => !env[v],
  );
  if (missing.length > 0)
    throw new Error(
      `SM_INJECTOR_E2E_CLUSTER=kubeconfig needs ${missing.join(", ")} (e.g. KUBECONFIG=~/.kube/config ` +
        `SM_INJECTOR_E2E_LOAD_IMAGE="kind load image-archive --name NAME" SM_INJECTOR_E2E_HOST_ADDRESS=172.18.0.1)`,
    );
  return {
    kind,
    kubeconfig: env.KUBECONFIG,
    loadImage: (env.SM_INJECTOR_E2E_LOAD_IMAGE as string).split(/\s+/).filter(Boolean),
    hostAddress: env.SM_INJECTOR_E2E_HOST_ADDRESS,
  };
}

/** True when the tests run on the local real node (tests of the node itself run only there). */
export const onLocalNode = () => clusterSettings().kind === "local";

function localCluster(node: RealNode): E2ECluster {
  return {
    kind: "local",
    kubeconfigPath: node.kubeconfigPath,
    kubeConfig: node.kubeConfig,
    hostAddressForPods: node.podGateway,
    loadImage: async (archive, name) => {
      await node.importImage(archive, name);
    },
    loadBusybox: async () => {
      const b = busyboxImage(node.binDir);
      await node.importImage(b.archive, b.name);
      return b.name;
    },
    realNode: node,
  };
}

function kubeconfigCluster(s: ClusterSettings): E2ECluster {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(s.kubeconfig as string);
  const [cmd, ...args] = s.loadImage as string[];
  const loadImage = async (archive: string) => {
    await execFileAsync(cmd as string, [...args, archive], { maxBuffer: 16 * 1024 * 1024 });
  };
  return {
    kind: "kubeconfig",
    kubeconfigPath: s.kubeconfig as string,
    kubeConfig,
    hostAddressForPods: s.hostAddress as string,
    loadImage,
    loadBusybox: async () => {
      const b = busyboxImage(await ensureBinaries(["busybox-image"]));
      await loadImage(b.archive);
      return b.name;
    },
  };
}

/**
 * One real node per machine: while another live process holds it (a test run, another demo), wait
 * for it, saying so every half minute. A lock left by a dead process is cleaned up by startRealNode.
 */
export async function waitForFreeNode(say: (line: string) => void, timeoutMs = 30 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastSaid = 0;
  for (;;) {
    const held = readNodeLock();
    if (!held || !isAlive(held.pid) || held.pid === process.pid) return;
    if (Date.now() > deadline)
      throw new Error(
        `the real node of process ${held.pid} is still running; stop it: npm run cluster -- down`,
      );
    if (Date.now() - lastSaid > 30_000) {
      say(`another real node runs on this machine (process ${held.pid}): waiting for it to stop…`);
      lastSaid = Date.now();
    }
    await delay(2000);
  }
}

/**
 * The test file's cluster: set up in `before` (then `setup`), released in `after` (the local node is
 * stopped and must leave nothing; on a kubeconfig cluster, `teardown` deletes what the tests made).
 */
export function useE2ECluster(
  hooks: { before: (fn: () => Promise<void>) => void; after: (fn: () => Promise<void>) => void },
  opts: { setup?: (c: E2ECluster) => Promise<void>; teardown?: (c: E2ECluster) => Promise<void> } = {},
): () => E2ECluster {
  const settings = clusterSettings();
  let cluster: E2ECluster | undefined;
  if (settings.kind === "local") {
    hooks.before(() => waitForFreeNode((l) => process.stderr.write(`[e2e-cluster] ${l}\n`)));
    const node = useRealNode(hooks, {
      setup: async (n) => {
        cluster = localCluster(n);
        await opts.setup?.(cluster);
      },
    });
    void node;
  } else {
    hooks.before(async () => {
      cluster = kubeconfigCluster(settings);
      await opts.setup?.(cluster);
    });
    hooks.after(async () => {
      if (cluster) await opts.teardown?.(cluster);
    });
  }
  return () => {
    if (cluster === undefined) throw new Error("the e2e cluster is not up (see the before hook's error)");
    return cluster;
  };
}
