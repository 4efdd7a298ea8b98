// The real node: kubelet + containerd + runc + CNI under a real control plane (kube-controller-manager,
// kube-scheduler). Pods from a locally built image (Debian's static busybox, FROM scratch) run for real:
// an init container, a tmpfs emptyDir, a projected token for STS, logs through the API server, a
// Deployment rolled out by the real controllers; and the teardown leaves nothing on the host.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { AppsV1Api, CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { readPinnedVersions } from "./harness/controlplane.ts";
import {
  busyboxImage,
  createNamespace,
  isPodReady,
  type RealNode,
  useRealNode,
  waitUntil,
} from "./harness/real-node.ts";
import { BRIDGE } from "./harness/real-node-config.ts";

const execFileAsync = promisify(execFile);
const NAMESPACE = "smoke";
const STS_AUDIENCE = "sts.amazonaws.com";
const TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount";

let core: CoreV1Api;
let apps: AppsV1Api;
let BUSYBOX: string;

const node = useRealNode({ before, after }, { setup: importBusyboxAndCreateNamespace });

async function importBusyboxAndCreateNamespace(n: RealNode): Promise<void> {
  core = n.kubeConfig.makeApiClient(CoreV1Api);
  apps = n.kubeConfig.makeApiClient(AppsV1Api);
  const busybox = busyboxImage(n.binDir);
  BUSYBOX = busybox.name;
  assert.ok((await n.importImage(busybox.archive, busybox.name)).includes(BUSYBOX));
  await createNamespace(core, NAMESPACE);
}

/** The JWT's claims (payload), decoded. */
function jwtClaims(token: string): Record<string, unknown> {
  const payload = token.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
}

test("the node registers, Ready, with the pinned kubelet and containerd", async () => {
  const pins = readPinnedVersions();
  const n = await core.readNode({ name: node().nodeName });
  assert.equal(n.status?.nodeInfo?.kubeletVersion, pins.KUBERNETES_VERSION);
  assert.equal(
    n.status?.nodeInfo?.containerRuntimeVersion,
    `containerd://${pins.CONTAINERD_VERSION?.replace(/^v/, "")}`,
  );
  assert.ok(n.status?.addresses?.some((a) => a.type === "InternalIP" && a.address === node().nodeIP));
});

test("a pod with an init container, a Memory emptyDir and an STS projected token runs to Ready; logs via the API", async () => {
  const t0 = performance.now();
  const pod = await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "smoke" },
      spec: {
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 1,
        volumes: [
          { name: "work", emptyDir: { medium: "Memory" } },
          {
            name: "aws-token",
            projected: {
              sources: [
                { serviceAccountToken: { audience: STS_AUDIENCE, expirationSeconds: 3600, path: "token" } },
              ],
            },
          },
        ],
        initContainers: [
          {
            name: "prepare",
            image: BUSYBOX,
            imagePullPolicy: "Never",
            // The emptyDir must be a tmpfs, and the token readable, before the app starts.
            command: [
              "sh",
              "-c",
              `grep -q ' /work tmpfs ' /proc/mounts && test -s ${TOKEN_DIR}/token && echo init-done > /work/init`,
            ],
            volumeMounts: [
              { name: "work", mountPath: "/work" },
              { name: "aws-token", mountPath: TOKEN_DIR, readOnly: true },
            ],
          },
        ],
        containers: [
          {
            name: "main",
            image: BUSYBOX,
            imagePullPolicy: "Never",
            command: ["sh", "-c", "cat /work/init; echo ready > /work/ready; exec sleep 3600"],
            readinessProbe: { exec: { command: ["test", "-f", "/work/ready"] }, periodSeconds: 1 },
            volumeMounts: [{ name: "work", mountPath: "/work" }],
          },
        ],
      },
    },
  });
  let last: V1Pod = pod;
  await waitUntil("the smoke pod to be Ready", 60_000, async () => {
    last = await core.readNamespacedPod({ namespace: NAMESPACE, name: "smoke" });
    return isPodReady(last);
  });
  process.stderr.write(`smoke pod created → Ready in ${Math.round(performance.now() - t0)} ms\n`);
  assert.equal(last.spec?.nodeName, node().nodeName, "placed by the real scheduler");
  assert.match(last.status?.podIP ?? "", /^10\.244\.0\.\d+$/);

  const log = await core.readNamespacedPodLog({ namespace: NAMESPACE, name: "smoke", container: "main" });
  assert.equal(log.trim(), "init-done");

  // The token the kubelet projected (read on the host): for STS, bound to this pod.
  const tokenFile = path.join(
    node().paths.kubeletRoot,
    "pods",
    last.metadata?.uid as string,
    "volumes",
    "kubernetes.io~projected",
    "aws-token",
    "token",
  );
  const claims = jwtClaims(readFileSync(tokenFile, "utf8"));
  assert.deepEqual(claims.aud, [STS_AUDIENCE]);
  assert.equal(claims.sub, `system:serviceaccount:${NAMESPACE}:default`);
  assert.equal((claims["kubernetes.io"] as { pod?: { name?: string } }).pod?.name, "smoke");
});

test("a Deployment's pods are made by the real controllers and placed by the real scheduler", async () => {
  const labels = { app: "sleeper" };
  await apps.createNamespacedDeployment({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "sleeper" },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              { name: "main", image: BUSYBOX, imagePullPolicy: "Never", command: ["sleep", "3600"] },
            ],
          },
        },
      },
    },
  });
  await waitUntil("the Deployment to have 2 ready replicas", 90_000, async () => {
    const d = await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: "sleeper" });
    return d.status?.readyReplicas === 2;
  });
  const pods = (await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: "app=sleeper" })).items;
  assert.equal(pods.length, 2);
  for (const pod of pods) {
    const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
    assert.equal(owner?.kind, "ReplicaSet");
    assert.match(owner?.name ?? "", /^sleeper-[a-z0-9]+$/);
    assert.equal(pod.spec?.nodeName, node().nodeName);
  }
  const events = (await core.listNamespacedEvent({ namespace: NAMESPACE })).items;
  const scheduled = events.filter(
    (e) =>
      e.reason === "Scheduled" &&
      (e.reportingComponent === "default-scheduler" || e.source?.component === "default-scheduler"),
  );
  assert.ok(scheduled.length >= 2, `Scheduled events: ${scheduled.map((e) => e.message).join("; ")}`);
});

test("Services by kube-proxy and CoreDNS: a NodePort from the host; a pod finds the Service by name, SRV record and cluster IP", async () => {
  const labels = { app: "web" };
  await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "web", labels },
      spec: {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: "main",
            image: BUSYBOX,
            imagePullPolicy: "Never",
            command: [
              "sh",
              "-c",
              "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www",
            ],
            readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
          },
        ],
      },
    },
  });
  const svc = await core.createNamespacedService({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "web" },
      spec: { type: "NodePort", selector: labels, ports: [{ name: "http", port: 80, targetPort: 8080 }] },
    },
  });
  const nodePort = svc.spec?.ports?.[0]?.nodePort;
  await waitUntil("the web pod to be Ready", 60_000, async () =>
    isPodReady(await core.readNamespacedPod({ namespace: NAMESPACE, name: "web" })),
  );
  // kube-proxy's node port, from the host.
  let body = "";
  await waitUntil(`the node port ${nodePort}`, 30_000, async () => {
    body = await (
      await fetch(`http://${node().nodeIP}:${nodePort}/`, { signal: AbortSignal.timeout(2000) })
    ).text();
    return true;
  });
  assert.equal(body.trim(), "hello-from-web");
  // From a pod: the short name through the search path, the SRV record of the named port (CoreDNS's
  // kubernetes plugin), and the cluster IP the name resolves to (kube-proxy's rules).
  const script = [
    "wget -q -O - http://web/",
    `nslookup -type=SRV _http._tcp.web.${NAMESPACE}.svc.cluster.local`,
  ].join(" && ");
  await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: {
      metadata: { name: "web-client" },
      spec: {
        restartPolicy: "Never",
        containers: [
          { name: "main", image: BUSYBOX, imagePullPolicy: "Never", command: ["sh", "-c", script] },
        ],
      },
    },
  });
  let phase: string | undefined;
  await waitUntil("the client pod to finish", 60_000, async () => {
    phase = (await core.readNamespacedPod({ namespace: NAMESPACE, name: "web-client" })).status?.phase;
    return phase === "Succeeded" || phase === "Failed";
  });
  const log = await core.readNamespacedPodLog({
    namespace: NAMESPACE,
    name: "web-client",
    container: "main",
  });
  assert.equal(phase, "Succeeded", log);
  assert.match(log, /^hello-from-web$/m);
  assert.match(
    log,
    new RegExp(`_http\\._tcp\\.web\\.${NAMESPACE}\\.svc\\.cluster\\.local.*\\b80\\b`, "s"),
    log,
  );
});

test("teardown stops every process it started and leaves no mounts, bridge, pod cgroups or iptables chains", async () => {
  const n = node();
  const running = n.leftovers();
  // While pods run, the checks see what they are meant to find (so the assertion below can fail).
  assert.ok(
    running.mounts.length > 0 &&
      running.bridge.length > 0 &&
      running.cgroups.length > 0 &&
      running.iptables.length > 0,
    JSON.stringify(running),
  );
  const pids = [...Object.values(n.processes), n.cp.processes.apiServer, n.cp.processes.etcd].map(
    (p) => p.pid,
  );

  const left = await n.stop();

  assert.deepEqual(left, { mounts: [], bridge: [], cgroups: [], processes: [], iptables: [] });
  assert.equal(existsSync(`/sys/class/net/${BRIDGE}`), false);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), `process ${pid} still runs`);
  const { stdout } = await execFileAsync("ip", ["netns", "list"]);
  assert.doesNotMatch(stdout, /cni-/);
  assert.equal(existsSync(n.paths.runDir), false, "the run directory is removed");
});
