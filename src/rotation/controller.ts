// `sm-injector rotation`: restarts workloads whose pods run with a secret version that is no longer
// the one their reference points at (a rotation, a PutSecretValue, a stage moved back).
//
// Each cycle: list the opted-in pods (label sm-injector.io/inject=true, annotation
// sm-injector.io/restart-on-rotation: "true"); read from each pod's status which versions its init
// container fetched (the termination message); ask Secrets Manager which version each stage points at
// now (DescribeSecret: metadata only, never a value); and give each stale workload a rolling restart
// by stamping its pod template, as `kubectl rollout restart` does, so its Deployment's strategy and
// PodDisruptionBudgets pace it. A workload is restarted once per set of new versions, and not more
// often than the minimum interval. It needs AWS credentials for secretsmanager:DescribeSecret only.
// Static: a dynamic import() of the SDK is its CommonJS build in the bundle (no constructors on the
// namespace). This module is itself imported lazily, by `sm-injector rotation` only.
import { DescribeSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { forEachBounded } from "../fetch/bounded.ts";
import { INJECT_LABEL } from "../spec/annotations.ts";
import { versionKey } from "../spec/fetched-versions.ts";
import {
  type Change,
  changesFor,
  decideRestarts,
  describeChange,
  type OwnerRef,
  type PodView,
  podView,
  RESTARTED_AT_ANNOTATION,
  RESTARTED_FOR_ANNOTATION,
  type RestartDecision,
  type WatchedRef,
  type Workload,
} from "./plan.ts";

export interface RotationDeps {
  /** Pods labelled for injection (in one namespace, or all). */
  listPods(): Promise<V1Pod[]>;
  /** A ReplicaSet's uid and controller (a Deployment), if it exists. */
  replicaSet(
    namespace: string,
    name: string,
  ): Promise<{ uid: string; owner: OwnerRef | undefined } | undefined>;
  /** A workload's uid and pod template annotations; undefined when it is gone. */
  workload(w: Workload): Promise<{ uid: string; annotations: Record<string, string> } | undefined>;
  /** Merges these annotations into the workload's pod template (a rolling restart). */
  stampTemplate(w: Workload, annotations: Record<string, string>): Promise<void>;
  /** DescribeSecret's VersionIdsToStages: version id → its stages. */
  versionStages(region: string, secretId: string): Promise<Record<string, string[]>>;
  log: Logger;
  now?: () => number;
}

export interface RotationOptions {
  minRestartIntervalMs: number;
  /** Workloads restarted per check at most; the others wait for the next check (default 10). */
  maxRestartsPerCheck?: number;
  dryRun: boolean;
  /** DescribeSecret calls in flight. */
  concurrency?: number;
}

export interface CycleReport {
  pods: number;
  watchedPods: number;
  secrets: number;
  describeErrors: number;
  stalePods: number;
  restarted: RestartDecision[];
  restartErrors: number;
  held: Array<{ workload: Workload | string; why: string }>;
}

function errorCode(e: unknown): string {
  const err = e as { name?: string; code?: string | number };
  return String(err.name && err.name !== "Error" ? err.name : (err.code ?? "Error"));
}

export async function rotationCycle(deps: RotationDeps, opts: RotationOptions): Promise<CycleReport> {
  const now = (deps.now ?? Date.now)();
  const pods = await deps.listPods();
  const views: PodView[] = [];
  for (const p of pods) {
    const v = podView(p);
    if ("skip" in v) deps.log.debug({ namespace: v.namespace, pod: v.name, why: v.skip }, "pod not watched");
    else views.push(v);
  }

  // What each watched stage points at now: one DescribeSecret per (secret, region).
  const secrets = new Map<string, { region: string; secretId: string; refs: WatchedRef[] }>();
  for (const v of views)
    for (const ref of v.refs) {
      const key = JSON.stringify([ref.region, ref.secretId]);
      const s = secrets.get(key) ?? { region: ref.region, secretId: ref.secretId, refs: [] };
      if (!s.refs.some((r) => r.stage === ref.stage)) s.refs.push(ref);
      secrets.set(key, s);
    }
  const current = new Map<string, string | null>();
  let describeErrors = 0;
  await forEachBounded([...secrets.values()], opts.concurrency ?? 8, async (s) => {
    try {
      const stages = await deps.versionStages(s.region, s.secretId);
      for (const ref of s.refs) {
        const version = Object.entries(stages).find(([, st]) => st.includes(ref.stage))?.[0];
        current.set(versionKey(ref), version ?? null);
      }
    } catch (e) {
      if (errorCode(e) === "ResourceNotFoundException") {
        // Deleted (or never there: an optional reference): nothing to restart into.
        for (const ref of s.refs) current.set(versionKey(ref), null);
        return;
      }
      describeErrors++;
      // Unknown is never a reason to restart.
      deps.log.warn(
        {
          secretId: s.secretId,
          region: s.region || undefined,
          code: errorCode(e),
          // AWS and Node messages name the secret and the problem, never a value (none is read).
          message: String((e as Error)?.message ?? e).split("\n")[0],
        },
        "cannot read the secret's versions (DescribeSecret); its pods are not checked this cycle",
      );
    }
  });

  // Stale pods and the workloads that own them.
  const held: CycleReport["held"] = [];
  const stale: Array<{ pod: PodView; workload: Workload; changes: Change[] }> = [];
  const replicaSets = new Map<string, Promise<{ uid: string; owner: OwnerRef | undefined } | undefined>>();
  for (const pod of views) {
    const changes = changesFor(pod, current);
    if (changes.length === 0) continue;
    let workload: Workload | undefined;
    const owner = pod.owner?.apiVersion === "apps/v1" ? pod.owner : undefined;
    if (owner?.kind === "StatefulSet" || owner?.kind === "DaemonSet")
      workload = { kind: owner.kind, namespace: pod.namespace, name: owner.name, uid: owner.uid };
    else if (owner?.kind === "ReplicaSet") {
      const key = `${pod.namespace}/${owner.name}`;
      let rs = replicaSets.get(key);
      if (!rs) {
        rs = deps.replicaSet(pod.namespace, owner.name);
        replicaSets.set(key, rs);
      }
      const found = await rs.catch(() => undefined);
      // The ReplicaSet the pod names (same uid), owned by an apps/v1 Deployment.
      if (
        found?.uid === owner.uid &&
        found.owner?.apiVersion === "apps/v1" &&
        found.owner.kind === "Deployment"
      )
        workload = {
          kind: "Deployment",
          namespace: pod.namespace,
          name: found.owner.name,
          uid: found.owner.uid,
        };
    }
    if (!workload) {
      const what = pod.owner ? `${pod.owner.kind}/${pod.owner.name} (${pod.owner.apiVersion})` : "a bare pod";
      held.push({
        workload: `Pod/${pod.namespace}/${pod.name}`,
        why: `runs an old version but belongs to ${what}, which this controller does not roll: delete the pod to restart it`,
      });
      deps.log.warn(
        { namespace: pod.namespace, pod: pod.name, owner: what, changes: changes.map(describeChange) },
        "stale pod that cannot be restarted by a rollout",
      );
      continue;
    }
    stale.push({ pod, workload, changes });
  }

  // Each workload once: it must still be the object the pods' owner references name.
  const annotations = new Map<string, Record<string, string> | undefined>();
  const checked: typeof stale = [];
  for (const st of stale) {
    const key = `${st.workload.kind}/${st.workload.namespace}/${st.workload.name}`;
    if (!annotations.has(key)) {
      try {
        const w = await deps.workload(st.workload);
        if (!w || w.uid !== st.workload.uid) {
          held.push({ workload: st.workload, why: w ? "replaced by another object of that name" : "gone" });
          annotations.set(key, undefined);
          continue;
        }
        annotations.set(key, w.annotations);
      } catch (e) {
        held.push({ workload: st.workload, why: `cannot read it (${errorCode(e)}); next check` });
        annotations.set(key, undefined);
        continue;
      }
    }
    if (annotations.get(key) !== undefined) checked.push(st);
  }
  const decision = decideRestarts(stale, (w) => annotations.get(`${w.kind}/${w.namespace}/${w.name}`), {
    now,
    minIntervalMs: opts.minRestartIntervalMs,
  });
  held.push(...decision.held);
  for (const h of decision.held) deps.log.info({ ...h.workload, why: h.why }, "stale pods, restart held");

  const restarted: RestartDecision[] = [];
  let restartErrors = 0;
  const max = opts.maxRestartsPerCheck ?? 10;
  for (const d of decision.restart.slice(max)) {
    held.push({ workload: d.workload, why: `paced: at most ${max} restarts per check` });
    deps.log.info(
      { ...d.workload, changes: d.changes.map(describeChange) },
      "stale, restart paced to the next check",
    );
  }
  for (const d of decision.restart.slice(0, max)) {
    const fields = {
      kind: d.workload.kind,
      namespace: d.workload.namespace,
      name: d.workload.name,
      changes: d.changes.map(describeChange),
      stalePods: d.pods,
      dryRun: opts.dryRun || undefined,
    };
    if (opts.dryRun) {
      deps.log.info(fields, "would restart (dry run)");
      restarted.push(d);
      continue;
    }
    try {
      await deps.stampTemplate(d.workload, {
        [RESTARTED_AT_ANNOTATION]: new Date(now).toISOString(),
        [RESTARTED_FOR_ANNOTATION]: d.marker,
      });
      deps.log.info(fields, "restarting: a secret it reads has a new version");
      restarted.push(d);
    } catch (e) {
      restartErrors++;
      deps.log.error({ ...fields, code: errorCode(e) }, "restart failed; retried next cycle");
    }
  }
  return {
    pods: pods.length,
    watchedPods: views.length,
    secrets: secrets.size,
    describeErrors,
    stalePods: stale.length,
    restarted,
    restartErrors,
    held,
  };
}

/** Real dependencies: @kubernetes/client-node and the AWS SDK. */
export async function realDeps(opts: {
  kubeconfig?: string;
  namespace?: string;
  log: Logger;
}): Promise<RotationDeps & { close(): void }> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const clients = new Map<string, SecretsManagerClient>();
  const client = (region: string) => {
    let c = clients.get(region);
    if (!c) {
      c = new SecretsManagerClient(region ? { region } : {});
      clients.set(region, c);
    }
    return c;
  };
  const notFound = (e: unknown) => (e as { code?: number }).code === 404;
  const labelSelector = `${INJECT_LABEL}=true`;
  const readers = {
    Deployment: (namespace: string, name: string) => apps.readNamespacedDeployment({ namespace, name }),
    StatefulSet: (namespace: string, name: string) => apps.readNamespacedStatefulSet({ namespace, name }),
    DaemonSet: (namespace: string, name: string) => apps.readNamespacedDaemonSet({ namespace, name }),
  };
  return {
    log: opts.log,
    async listPods() {
      // In pages: a large cluster's pods in one response would not fit the controller's memory.
      const pods: V1Pod[] = [];
      let cont: string | undefined;
      do {
        const page = { labelSelector, limit: 500, ...(cont && { _continue: cont }) };
        const list = opts.namespace
          ? await core.listNamespacedPod({ namespace: opts.namespace, ...page })
          : await core.listPodForAllNamespaces(page);
        pods.push(...list.items);
        cont = list.metadata?._continue || undefined;
      } while (cont);
      return pods;
    },
    async replicaSet(namespace, name) {
      try {
        const rs = await apps.readNamespacedReplicaSet({ namespace, name });
        const o = rs.metadata?.ownerReferences?.find((r) => r.controller);
        return {
          uid: rs.metadata?.uid ?? "",
          owner: o && { apiVersion: o.apiVersion, kind: o.kind, name: o.name, uid: o.uid },
        };
      } catch (e) {
        if (notFound(e)) return undefined;
        throw e;
      }
    },
    async workload(w) {
      try {
        const obj = await readers[w.kind](w.namespace, w.name);
        return { uid: obj.metadata?.uid ?? "", annotations: obj.spec?.template.metadata?.annotations ?? {} };
      } catch (e) {
        if (notFound(e)) return undefined;
        throw e;
      }
    },
    async stampTemplate(w, annotations) {
      // metadata.uid makes the patch conditional: it fails if the object was replaced meanwhile.
      const body = { metadata: { uid: w.uid }, spec: { template: { metadata: { annotations } } } };
      const options = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
      const args = { namespace: w.namespace, name: w.name, body, fieldManager: "sm-injector-rotation" };
      if (w.kind === "Deployment") await apps.patchNamespacedDeployment(args, options);
      else if (w.kind === "StatefulSet") await apps.patchNamespacedStatefulSet(args, options);
      else await apps.patchNamespacedDaemonSet(args, options);
    },
    async versionStages(region, secretId) {
      const out = await client(region).send(new DescribeSecretCommand({ SecretId: secretId }));
      return out.VersionIdsToStages ?? {};
    },
    close() {
      for (const c of clients.values()) c.destroy();
    },
  };
}
