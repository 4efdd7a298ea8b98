// Which workloads to restart after a rotation: pure functions over pods (as the API server returns
// them) and the versions their references point at now. No I/O: src/rotation/controller.ts feeds it.
//
// A pod is stale when a reference it read (a stage, AWSCURRENT unless pinned otherwise) now points at
// another version than the one its init container recorded in its termination message
// (src/spec/fetched-versions.ts). Pinned version ids never move and are not watched.
import type { V1Pod } from "@kubernetes/client-node";
import { INIT_CONTAINER_NAME, STATUS_ANNOTATION } from "../spec/annotations.ts";
import { FETCH_SPEC_ENV, FetchSpecSchema } from "../spec/fetch-spec.ts";
import {
  decodeVersions,
  type FetchedVersions,
  versionKey,
  versionsDigest,
} from "../spec/fetched-versions.ts";

/** Pod template annotation: "true" opts the workload in to restarts when a secret it reads rotates. */
export const RESTART_ON_ROTATION_ANNOTATION = "sm-injector.io/restart-on-rotation";
/**
 * Set on the workload's pod template by a restart: when, and for which new versions. Outside the
 * `sm-injector.io/` prefix on purpose: the webhook refuses unknown keys there, and these reach pods.
 */
export const RESTARTED_AT_ANNOTATION = "rotation.sm-injector.io/restarted-at";
export const RESTARTED_FOR_ANNOTATION = "rotation.sm-injector.io/restarted-for";

export interface WatchedRef {
  secretId: string;
  region: string;
  stage: string;
  /** Every entry reading it is optional (the pod starts without it). */
  optional: boolean;
}

/** The pod's controller, as its ownerReference names it (kind, name, uid, apiVersion). */
export interface OwnerRef {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

export interface PodView {
  namespace: string;
  name: string;
  /** The pod's controller (ownerReferences with controller: true), if any. */
  owner: OwnerRef | undefined;
  refs: WatchedRef[];
  fetched: FetchedVersions;
}

export type PodSkip = { namespace: string; name: string; skip: string };

/** What the rotation controller can know about a pod, or why it leaves the pod alone. */
export function podView(pod: V1Pod): PodView | PodSkip {
  const namespace = pod.metadata?.namespace ?? "";
  const name = pod.metadata?.name ?? "";
  const skip = (why: string): PodSkip => ({ namespace, name, skip: why });
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[RESTART_ON_ROTATION_ANNOTATION]?.trim() !== "true") return skip("not opted in");
  if (annotations[STATUS_ANNOTATION] !== "injected") return skip("not injected");
  if (pod.metadata?.deletionTimestamp) return skip("terminating");
  const init = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER_NAME);
  const raw = init?.env?.find((e) => e.name === FETCH_SPEC_ENV)?.value;
  if (!init || !raw) return skip("no sm-injector init container");
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return skip(`${FETCH_SPEC_ENV} is not JSON`);
  }
  const spec = FetchSpecSchema.safeParse(json);
  if (!spec.success) return skip(`${FETCH_SPEC_ENV} is not of this release`);
  const envRegion = (n: string) => init.env?.find((e) => e.name === n)?.value;
  const defaultRegion = envRegion("AWS_REGION") ?? envRegion("AWS_DEFAULT_REGION") ?? "";
  const status = pod.status?.initContainerStatuses?.find((s) => s.name === INIT_CONTAINER_NAME);
  const terminated = status?.state?.terminated;
  if (terminated?.exitCode !== 0) return skip("init container has not completed");
  const fetched = decodeVersions(terminated.message);
  if (!fetched) return skip("no versions recorded (termination message)");
  const refs = new Map<string, WatchedRef>();
  for (const e of spec.data.entries) {
    if (e.source.versionId !== undefined) continue;
    const ref = {
      secretId: e.source.secretId,
      region: e.source.region ?? defaultRegion,
      stage: e.source.versionStage ?? "AWSCURRENT",
      optional: e.optional,
    };
    const key = versionKey(ref);
    const seen = refs.get(key);
    refs.set(key, seen ? { ...seen, optional: seen.optional && ref.optional } : ref);
  }
  if (refs.size === 0) return skip("only pinned versions");
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
  return {
    namespace,
    name,
    owner: owner && { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid },
    refs: [...refs.values()],
    fetched,
  };
}

/**
 * versionKey(ref) → the version id the stage points at now; null: on no version (or no such secret);
 * absent: unknown (not read, or an error).
 */
export type CurrentVersions = ReadonlyMap<string, string | null>;

export interface Change {
  secretId: string;
  region: string;
  stage: string;
  /** Undefined when the pod only recorded a digest. */
  from?: string;
  /** Null: the stage is on no version any more (the pod keeps running; nothing to restart into). */
  to: string | null;
}

/**
 * What changed for this pod: the references whose stage moved. Unknown current versions (a failed
 * DescribeSecret) never count as a change: fail safe, no restart on missing information.
 */
export function changesFor(pod: PodView, current: CurrentVersions): Change[] {
  if (pod.fetched.records) {
    const had = new Map(pod.fetched.records.map((r) => [versionKey(r), r.versionId]));
    const changes: Change[] = [];
    for (const ref of pod.refs) {
      const key = versionKey(ref);
      const from = had.get(key);
      const to = current.get(key);
      if (from === undefined || to === undefined || to === null || to === from) continue;
      changes.push({ secretId: ref.secretId, region: ref.region, stage: ref.stage, from, to });
    }
    return changes;
  }
  // Digest only (many secrets): compare the digest of what is current now. An optional reference
  // that points at nothing was not recorded by the init container either: left out. Anything else
  // unknown or gone means no decision (never restart a pod into a missing required secret).
  const now: Array<WatchedRef & { versionId: string }> = [];
  for (const ref of pod.refs) {
    const v = current.get(versionKey(ref));
    if (v === undefined) return [];
    if (v === null) {
      if (ref.optional) continue;
      return [];
    }
    now.push({ ...ref, versionId: v });
  }
  if (versionsDigest(now) === pod.fetched.digest) return [];
  return now.map((r) => ({ secretId: r.secretId, region: r.region, stage: r.stage, to: r.versionId }));
}

export interface Workload {
  kind: "Deployment" | "StatefulSet" | "DaemonSet";
  namespace: string;
  name: string;
  /** The uid the owner reference names: the object patched must be that one, not a namesake. */
  uid: string;
}

export interface RestartDecision {
  workload: Workload;
  changes: Change[];
  pods: string[];
  /** Identifies the new versions: a workload is restarted once for them. */
  marker: string;
}

/** The new versions a restart is for, as the `restarted-for` annotation value. */
export function restartMarker(changes: readonly Change[]): string {
  const to = changes.map((c) => ({
    secretId: c.secretId,
    region: c.region,
    stage: c.stage,
    versionId: c.to ?? "",
  }));
  return versionsDigest(to).slice(0, 32);
}

/** Human-readable and value-free: "erp/production/database AWSCURRENT 1a2b3c4d→5e6f7a8b (us-east-1)". */
export function describeChange(c: Change): string {
  const short = (v: string | null | undefined) => (v ? v.slice(0, 8) : "?");
  return `${c.secretId} ${c.stage} ${short(c.from)}→${short(c.to)}${c.region ? ` (${c.region})` : ""}`;
}

/**
 * Groups stale pods by the workload to restart, skipping a workload already restarted for these
 * versions (its rollout is under way: its old pods are still there) or restarted too recently.
 */
export function decideRestarts(
  stale: ReadonlyArray<{ pod: PodView; workload: Workload; changes: Change[] }>,
  templateAnnotations: (w: Workload) => Record<string, string> | undefined,
  opts: { now: number; minIntervalMs: number },
): { restart: RestartDecision[]; held: Array<{ workload: Workload; why: string }> } {
  const byWorkload = new Map<string, { workload: Workload; changes: Map<string, Change>; pods: string[] }>();
  for (const s of stale) {
    const key = `${s.workload.kind}/${s.workload.namespace}/${s.workload.name}`;
    const group = byWorkload.get(key) ?? {
      workload: s.workload,
      changes: new Map<string, Change>(),
      pods: [] as string[],
    };
    for (const c of s.changes) group.changes.set(`${versionKey(c)}→${c.to}`, c);
    group.pods.push(s.pod.name);
    byWorkload.set(key, group);
  }
  const restart: RestartDecision[] = [];
  const held: Array<{ workload: Workload; why: string }> = [];
  for (const g of byWorkload.values()) {
    const changes = [...g.changes.values()].sort((a, b) => versionKey(a).localeCompare(versionKey(b)));
    const marker = restartMarker(changes);
    const annotations = templateAnnotations(g.workload) ?? {};
    if (annotations[RESTARTED_FOR_ANNOTATION] === marker) {
      held.push({ workload: g.workload, why: "already restarted for these versions (rollout in progress)" });
      continue;
    }
    const last = Date.parse(annotations[RESTARTED_AT_ANNOTATION] ?? "");
    if (Number.isFinite(last) && opts.now - last < opts.minIntervalMs) {
      held.push({
        workload: g.workload,
        why: `restarted ${Math.round((opts.now - last) / 1000)} s ago (minimum interval ${Math.round(opts.minIntervalMs / 1000)} s)`,
      });
      continue;
    }
    restart.push({ workload: g.workload, changes, pods: g.pods.sort(), marker });
  }
  return { restart, held };
}
