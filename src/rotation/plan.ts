// Which workloads to restart after a rotation: pure functions over what the API server returns (pods,
// ReplicaSets, ControllerRevisions, workloads) and the versions their references point at now. No
// I/O: src/rotation/controller.ts feeds it.
//
// Trust: a pod is tenant input. Anyone who may create a pod can give it any labels, annotations,
// ownerReferences, init containers and (through what its containers write) termination message. So
// a pod's own word is only a hint that something MAY be stale; every decision rests on facts the pod
// cannot forge:
//   - the opt-in is the workload's own pod template (label sm-injector.io/inject=true and annotation
//     sm-injector.io/restart-on-rotation: "true"), never the pod's annotations;
//   - the pod belongs to the workload: it matches the workload's selector, and its template revision
//     (a ReplicaSet for a Deployment, a ControllerRevision for a StatefulSet or DaemonSet) is
//     controlled by the workload (uid) and holds the workload's current template, or the template as
//     it was before this controller's own restart stamps;
//   - the secrets watched are the ones the TEMPLATE's annotations reference (compiled with the
//     webhook's own compiler); whatever else the pod names is ignored and logged;
//   - a restart is for the current versions of ALL the template's watched references, so the
//     `restarted-for` marker only changes when a version really changes: forged claims about old
//     versions give at most one restart per real change, never one per claim.
import { createHash } from "node:crypto";
import type { V1LabelSelector, V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import {
  ANNOTATIONS,
  type AnnotationName,
  annotationOf,
  INIT_CONTAINER_NAME,
  INJECT_LABEL,
  PREFIX,
  RESTART_ON_ROTATION_ANNOTATION,
  STATUS_ANNOTATION,
} from "../contract/annotations.ts";
import { compileInjectionSpec } from "../contract/compile.ts";
import { InjectorConfigSchema } from "../contract/config.ts";
import {
  entryOptional,
  entrySources,
  FETCH_SPEC_ENV,
  type FetchEntry,
  FetchSpecSchema,
} from "../contract/fetch-spec.ts";
import {
  decodeVersions,
  type FetchedVersions,
  TERMINATION_MESSAGE_LIMIT,
  versionKey,
  versionsDigest,
} from "../contract/fetched-versions.ts";
import { REGION_PATTERN } from "../contract/reference.ts";

/** Prefix of what this controller writes on pod templates (and nothing else). */
export const ROTATION_PREFIX = "rotation.sm-injector.io/";
/**
 * Set on the workload's pod template by a restart: when, and for which versions. Outside the
 * `sm-injector.io/` prefix on purpose: the webhook refuses unknown keys there, and these reach pods.
 */
export const RESTARTED_AT_ANNOTATION = `${ROTATION_PREFIX}restarted-at`;
export const RESTARTED_FOR_ANNOTATION = `${ROTATION_PREFIX}restarted-for`;
/** Set by the Deployment controller on a ReplicaSet, its template and its pods. */
export const POD_TEMPLATE_HASH_LABEL = "pod-template-hash";
/** Set by the StatefulSet and DaemonSet controllers on pods and ControllerRevisions. */
export const CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash";
/** Set by the Job controller on a Job's template (and its pods): not in the CronJob's jobTemplate. */
const JOB_LABELS = [
  "controller-uid",
  "job-name",
  "batch.kubernetes.io/controller-uid",
  "batch.kubernetes.io/job-name",
];

/**
 * What is read from one pod, at most. Each bound is what a real injected pod can never exceed, so a
 * pod over it is not one the webhook made: skipped before parsing.
 */
export const POD_LIMITS = {
  /** Linux refuses a larger environment variable (MAX_ARG_STRLEN): such an init container never ran. */
  specBytes: 128 * 1024,
  /** The kubelet keeps at most this much of a container's termination message. */
  messageBytes: TERMINATION_MESSAGE_LIMIT,
  /** Labels kept for the selector check (a Deployment's pods carry a handful). */
  labelBytes: 16 * 1024,
  /** Distinct watched references of one pod (the init container's own entry limit is lower). */
  refs: 500,
} as const;

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

/**
 * The small per-pod view the controller keeps (the V1Pod is dropped): what the pod CLAIMS. Nothing
 * in it is trusted before verifyMembership() and the template's references have checked it.
 */
export interface PodView {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The pod's controller (ownerReferences with controller: true), if any. */
  owner: OwnerRef | undefined;
  refs: WatchedRef[];
  fetched: FetchedVersions;
}

export type PodSkip = { namespace: string; name: string; skip: string };

const byteLength = (s: string) => Buffer.byteLength(s);

/**
 * What the rotation controller reads from a pod, or why it leaves the pod alone. The pod's own
 * restart-on-rotation annotation is only a cheap filter (pods of an opted-in template carry it):
 * the opt-in that counts is the template's, checked later.
 */
export function podView(pod: V1Pod): PodView | PodSkip {
  const annotations = pod.metadata?.annotations ?? {};
  const skip = (why: string): PodSkip => ({
    namespace: pod.metadata?.namespace ?? "",
    name: pod.metadata?.name ?? "",
    skip: why,
  });
  if (annotations[RESTART_ON_ROTATION_ANNOTATION]?.trim() !== "true") return skip("not opted in");
  const view = injectedPodView(pod, ROLLABLE);
  return "skip" in view || view.refs.length > 0 ? view : skip("only pinned versions");
}

/** The pod controllers whose workloads a rollout restarts. */
const ROLLABLE: OwnerKinds = { "apps/v1": ["ReplicaSet", "StatefulSet", "DaemonSet"] };
/** The pod controllers of every workload kind a review covers (a CronJob's pods belong to its Jobs). */
export const REVIEWED_OWNERS: OwnerKinds = { ...ROLLABLE, "batch/v1": ["Job"] };
/** apiVersion → the kinds of pod controller accepted. */
export type OwnerKinds = Readonly<Record<string, readonly string[]>>;

/**
 * What an injected pod claims (its controller, watched references and the versions it recorded),
 * or why it has nothing to claim; for pods controlled by one of `owners`. A pod of pinned versions
 * only has no watched references, and is still a running pod of its workload.
 */
export function injectedPodView(pod: V1Pod, owners: OwnerKinds): PodView | PodSkip {
  const namespace = pod.metadata?.namespace ?? "";
  const name = pod.metadata?.name ?? "";
  const skip = (why: string): PodSkip => ({ namespace, name, skip: why });
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[STATUS_ANNOTATION] !== "injected") return skip("not injected");
  if (pod.metadata?.deletionTimestamp) return skip("terminating");
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
  if (!owner) return skip("no controller (a bare pod: no rollout can restart it)");
  if (!Object.hasOwn(owners, owner.apiVersion) || !owners[owner.apiVersion]?.includes(owner.kind))
    return skip(`owned by ${owner.kind}/${owner.name} (${owner.apiVersion}), which no rollout restarts`);
  const labels = pod.metadata?.labels ?? {};
  if (byteLength(JSON.stringify(labels)) > POD_LIMITS.labelBytes)
    return skip(`labels over ${POD_LIMITS.labelBytes} bytes`);
  const init = pod.spec?.initContainers?.find((c) => c.name === INIT_CONTAINER_NAME);
  const raw = init?.env?.find((e) => e.name === FETCH_SPEC_ENV)?.value;
  if (!init || !raw) return skip("no sm-injector init container");
  if (raw.length > POD_LIMITS.specBytes) return skip(`${FETCH_SPEC_ENV} over ${POD_LIMITS.specBytes} bytes`);
  const status = pod.status?.initContainerStatuses?.find((s) => s.name === INIT_CONTAINER_NAME);
  const terminated = status?.state?.terminated;
  if (terminated?.exitCode !== 0) return skip("init container has not completed");
  if ((terminated.message?.length ?? 0) > POD_LIMITS.messageBytes)
    return skip(`termination message over ${POD_LIMITS.messageBytes} bytes`);
  const fetched = decodeVersions(terminated.message);
  if (!fetched) return skip("no versions recorded (termination message)");
  const refs = specRefs(raw, init.env ?? []);
  if (typeof refs === "string") return skip(refs);
  return {
    namespace,
    name,
    labels: { ...labels },
    owner: { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid },
    refs,
    fetched: fetched.records
      ? { records: fetched.records, digest: fetched.digest }
      : { digest: fetched.digest },
  };
}

/** The movable references (stages) an SM_INJECTOR_SPEC names; a string says why it is unusable. */
function specRefs(raw: string, env: ReadonlyArray<{ name: string; value?: string }>): WatchedRef[] | string {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return `${FETCH_SPEC_ENV} is not JSON`;
  }
  const spec = FetchSpecSchema.safeParse(json);
  if (!spec.success) return `${FETCH_SPEC_ENV} is not of this release`;
  const envRegion = (n: string) => env.find((e) => e.name === n)?.value;
  const defaultRegion = envRegion("AWS_REGION") ?? envRegion("AWS_DEFAULT_REGION") ?? "";
  const refs = mergeRefs(movableRefs(spec.data.entries, defaultRegion));
  if (refs.length > POD_LIMITS.refs) return `more than ${POD_LIMITS.refs} watched references`;
  return refs;
}

/**
 * Every secret the entries read by stage, not pinned version id, one per source: a template's
 * placeholders each count, like any other reference.
 */
function movableRefs(entries: readonly FetchEntry[], defaultRegion: string): WatchedRef[] {
  const refs: WatchedRef[] = [];
  for (const e of entries) {
    for (const s of entrySources(e)) {
      if (s.versionId !== undefined) continue;
      refs.push({
        secretId: s.secretId,
        region: s.region ?? defaultRegion,
        stage: s.versionStage ?? "AWSCURRENT",
        optional: entryOptional(e),
      });
    }
  }
  return refs;
}

/** One ref per (secret, region, stage); optional only when every entry reading it is. */
function mergeRefs(all: readonly WatchedRef[]): WatchedRef[] {
  const refs = new Map<string, WatchedRef>();
  for (const ref of all) {
    const key = versionKey(ref);
    const seen = refs.get(key);
    refs.set(key, seen ? { ...seen, optional: seen.optional && ref.optional } : ref);
  }
  return [...refs.values()];
}

// The workload and its template revisions, as verified facts.

export interface Workload {
  /** A CronJob is reviewed (its pods, through their Jobs), never restarted. */
  kind: "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob";
  namespace: string;
  name: string;
  /** The uid the owner reference names: the object patched must be that one, not a namesake. */
  uid: string;
}

/** Fingerprints of a pod template, to compare templates without keeping them in memory. */
export interface TemplateFingerprint {
  /** The template exactly (minus the controller's hash label). */
  exact: string;
  /** The same without this controller's rotation.sm-injector.io/ annotations. */
  base: string;
}

/** A workload as read, reduced to what the decisions need (the template itself is dropped). */
export interface WorkloadFacts {
  workload: Workload;
  selector: V1LabelSelector | undefined;
  /** Why the template does not opt in to restarts; undefined when it does. */
  notOptedIn: string | undefined;
  /** Why the template is not labelled for injection; undefined when it is. */
  notInjected: string | undefined;
  fingerprint: TemplateFingerprint;
  /** The template's watched references (of an injected template), or why they cannot be known. */
  refs: WatchedRef[] | { error: string };
  /** The template's rotation.sm-injector.io/ annotations (restarted-at, restarted-for). */
  rotationAnnotations: Record<string, string>;
}

/** A ReplicaSet (for a Deployment), a ControllerRevision (StatefulSet, DaemonSet) or a Job (CronJob), as read. */
export interface RevisionFacts {
  kind: "ReplicaSet" | "ControllerRevision" | "Job";
  name: string;
  uid: string;
  controller: OwnerRef | undefined;
  /** Its pod-template-hash (ReplicaSet) or controller-revision-hash (ControllerRevision) label. */
  hash: string | undefined;
  /** Undefined when its template could not be read. */
  fingerprint: TemplateFingerprint | undefined;
  /** A Job's own selector (its pods match the Job's, a CronJob has none). */
  selector?: V1LabelSelector | undefined;
}

/** Why a template is not labelled for injection, or undefined when it is. */
export function templateInjected(template: V1PodTemplateSpec | undefined): string | undefined {
  return template?.metadata?.labels?.[INJECT_LABEL] === "true"
    ? undefined
    : `its pod template has no label ${INJECT_LABEL}: "true"`;
}

/** Why a template does not opt in to restarts, or undefined when it does. */
export function templateOptIn(template: V1PodTemplateSpec | undefined): string | undefined {
  const notInjected = templateInjected(template);
  if (notInjected) return notInjected;
  if (template?.metadata?.annotations?.[RESTART_ON_ROTATION_ANNOTATION]?.trim() !== "true")
    return `its pod template has no annotation ${RESTART_ON_ROTATION_ANNOTATION}: "true"`;
  return undefined;
}

/** A label selector (matchLabels and matchExpressions) against labels. An empty selector matches nothing. */
export function selectorMatches(
  selector: V1LabelSelector | undefined,
  labels: Record<string, string>,
): boolean {
  const matchLabels = Object.entries(selector?.matchLabels ?? {});
  const expressions = selector?.matchExpressions ?? [];
  // apps/v1 requires a non-empty selector; an empty one would claim every pod: never trusted.
  if (matchLabels.length === 0 && expressions.length === 0) return false;
  if (!matchLabels.every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v)) return false;
  return expressions.every((e) => {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case "In":
        return has && values.includes(labels[e.key] as string);
      case "NotIn":
        return !has || !values.includes(labels[e.key] as string);
      case "Exists":
        return has;
      case "DoesNotExist":
        return !has;
      default:
        return false;
    }
  });
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.000Z$/;

/**
 * JSON with sorted keys, null/undefined members left out and dates as the API server writes them:
 * a typed object read through the client and the raw JSON of a ControllerRevision compare equal.
 */
function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (value instanceof Date) return JSON.stringify(value.toISOString().replace(RFC3339, "$1Z"));
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== null && v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value);
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * Fingerprints of a template, leaving out the labels its controller adds to each revision (the
 * Deployment controller compares templates the same way: EqualIgnoreHash; the Job controller adds
 * its own to a CronJob's template) and, for `base`, the
 * rotation.sm-injector.io/ annotations this controller stamps.
 */
export function templateFingerprint(template: V1PodTemplateSpec | undefined): TemplateFingerprint {
  const t = (template ?? {}) as V1PodTemplateSpec & { $patch?: string };
  const { $patch: _patch, ...rest } = t;
  const metadata = { ...rest.metadata };
  const labels = { ...metadata.labels };
  delete labels[POD_TEMPLATE_HASH_LABEL];
  delete labels[CONTROLLER_REVISION_HASH_LABEL];
  for (const l of JOB_LABELS) delete labels[l];
  metadata.labels = Object.keys(labels).length > 0 ? labels : undefined;
  const exactTemplate = { ...rest, metadata };
  const annotations = Object.fromEntries(
    Object.entries(metadata.annotations ?? {}).filter(([k]) => !k.startsWith(ROTATION_PREFIX)),
  );
  const baseTemplate = {
    ...rest,
    metadata: { ...metadata, annotations: Object.keys(annotations).length > 0 ? annotations : undefined },
  };
  if (exactTemplate.metadata.annotations && Object.keys(exactTemplate.metadata.annotations).length === 0)
    exactTemplate.metadata.annotations = undefined;
  return { exact: sha256(canonicalJson(exactTemplate)), base: sha256(canonicalJson(baseTemplate)) };
}

/**
 * The template a ControllerRevision holds: the StatefulSet and DaemonSet controllers store
 * `{"spec":{"template":{…,"$patch":"replace"}}}` as its data.
 */
export function controllerRevisionTemplate(data: unknown): V1PodTemplateSpec | undefined {
  const t = (data as { spec?: { template?: unknown } } | undefined)?.spec?.template;
  return t && typeof t === "object" && !Array.isArray(t) ? (t as V1PodTemplateSpec) : undefined;
}

/**
 * Only what decides where secrets come from: the rest (output, wrapping) is the webhook's concern.
 * Every family (`env.`, `template.`, `env-from`) names secrets, so a new one is watched without
 * being listed here.
 */
const REFERENCE_ANNOTATIONS: ReadonlySet<AnnotationName> = new Set([
  ...(Object.keys(ANNOTATIONS) as AnnotationName[]).filter((n) => ANNOTATIONS[n].kind !== "fixed"),
  "secrets",
  "region",
  "containers",
]);
const isReferenceAnnotation = (key: string) => {
  if (!key.startsWith(PREFIX)) return false;
  const known = annotationOf(key.slice(PREFIX.length));
  return known !== undefined && REFERENCE_ANNOTATIONS.has(known.name);
};

/**
 * The movable references (stages, not pinned version ids) a pod template's annotations name, as the
 * webhook would compile them for its pods. `defaultRegion` stands for the webhook's default region
 * (the controller's own AWS region): a reference that needs it and has none cannot be watched.
 */
export function templateRefs(
  template: V1PodTemplateSpec | undefined,
  defaultRegion: string | undefined,
): WatchedRef[] | { error: string } {
  const all = templateReferences(template, defaultRegion);
  if (!Array.isArray(all)) return all;
  return mergeRefs(
    all
      .filter((r) => r.versionId === undefined)
      .map(({ secretId, region, stage, optional }) => ({ secretId, region, stage, optional })),
  );
}

/** A reference of a pod template: a stage (watched), or a pinned version id. */
export interface TemplateRef extends WatchedRef {
  versionId?: string;
}

/** Every reference a pod template's annotations name (pinned versions too), as the webhook compiles them. */
export function templateReferences(
  template: V1PodTemplateSpec | undefined,
  defaultRegion: string | undefined,
): TemplateRef[] | { error: string } {
  const annotations = Object.fromEntries(
    Object.entries(template?.metadata?.annotations ?? {}).filter(([k]) => isReferenceAnnotation(k)),
  );
  const region = defaultRegion && REGION_PATTERN.test(defaultRegion) ? defaultRegion : undefined;
  const compiled = compileInjectionSpec(
    { metadata: { annotations }, spec: template?.spec ?? { containers: [] } },
    InjectorConfigSchema.parse({
      image: "sm-injector",
      maxSecrets: 500,
      ...(region && { defaultRegion: region }),
    }),
  );
  if (!compiled.ok)
    return {
      error: `its pod template's sm-injector annotations do not compile: ${compiled.errors.slice(0, 3).join("; ")}${compiled.errors.length > 3 ? ` (and ${compiled.errors.length - 3} more)` : ""}`,
    };
  // Every secret of every entry: a template's placeholders each count, like any other reference.
  return compiled.spec.entries.flatMap((e) =>
    entrySources(e).map((src) => ({
      secretId: src.secretId,
      region: src.region ?? region ?? "",
      stage: src.versionStage ?? "AWSCURRENT",
      optional: entryOptional(e),
      ...(src.versionId !== undefined && { versionId: src.versionId }),
    })),
  );
}

/** The facts kept about a workload, from its object as read (its template is not kept). */
export function workloadFacts(
  workload: Workload,
  selector: V1LabelSelector | undefined,
  template: V1PodTemplateSpec | undefined,
  defaultRegion: string | undefined,
): WorkloadFacts {
  const notInjected = templateInjected(template);
  return {
    workload,
    selector,
    notOptedIn: templateOptIn(template),
    notInjected,
    fingerprint: templateFingerprint(template),
    refs: notInjected ? [] : templateRefs(template, defaultRegion),
    rotationAnnotations: Object.fromEntries(
      Object.entries(template?.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(ROTATION_PREFIX)),
    ),
  };
}

/** Which template revision object (ReplicaSet or ControllerRevision) a pod says it was made from. */
export function revisionName(pod: PodView, kind: Workload["kind"]): string | undefined {
  if (kind === "Deployment") return pod.owner?.kind === "ReplicaSet" ? pod.owner.name : undefined;
  if (kind === "CronJob") return pod.owner?.kind === "Job" ? pod.owner.name : undefined;
  const hash = pod.labels[CONTROLLER_REVISION_HASH_LABEL];
  if (!hash || !pod.owner) return undefined;
  // The StatefulSet controller labels pods with the revision's name, the DaemonSet controller with its hash.
  return kind === "StatefulSet" ? hash : `${pod.owner.name}-${hash}`;
}

export type Membership = { ok: true; revision: "current" | "previous" } | { ok: false; why: string };

/**
 * Whether the pod really belongs to the workload's current template (or the template before this
 * controller's own restarts): every fact here comes from objects the pod's author cannot write,
 * except the pod's labels and owner reference, which must agree with them.
 */
export function verifyMembership(pod: PodView, w: WorkloadFacts, rev: RevisionFacts): Membership {
  const no = (why: string): Membership => ({ ok: false, why });
  const kind = w.workload.kind;
  // A CronJob's pods match their Job's selector (the Job controller's controller-uid label); it has none.
  let selector = w.selector;
  if (kind === "Deployment") {
    if (pod.owner?.kind !== "ReplicaSet" || pod.owner.uid !== rev.uid || pod.owner.name !== rev.name)
      return no(`its owner reference does not name ReplicaSet ${rev.name} (uid ${rev.uid})`);
    if (!rev.hash || pod.labels[POD_TEMPLATE_HASH_LABEL] !== rev.hash)
      return no(`its ${POD_TEMPLATE_HASH_LABEL} label is not its ReplicaSet's`);
  } else if (kind === "CronJob") {
    if (pod.owner?.kind !== "Job" || pod.owner.uid !== rev.uid || pod.owner.name !== rev.name)
      return no(`its owner reference does not name Job ${rev.name} (uid ${rev.uid})`);
    selector = rev.selector;
  } else {
    if (pod.owner?.kind !== kind || pod.owner.uid !== w.workload.uid)
      return no(`its owner reference does not name ${kind} ${w.workload.name} (uid ${w.workload.uid})`);
    const hash = pod.labels[CONTROLLER_REVISION_HASH_LABEL];
    if (
      !hash ||
      rev.name !== revisionName(pod, kind) ||
      (rev.hash !== undefined && !rev.name.endsWith(rev.hash))
    )
      return no(`its ${CONTROLLER_REVISION_HASH_LABEL} label does not name ControllerRevision ${rev.name}`);
  }
  if (
    rev.controller?.apiVersion !== (kind === "CronJob" ? "batch/v1" : "apps/v1") ||
    rev.controller.kind !== kind ||
    rev.controller.uid !== w.workload.uid
  )
    return no(
      `${rev.kind} ${rev.name} is not controlled by ${kind} ${w.workload.name} (uid ${w.workload.uid})`,
    );
  if (!selectorMatches(selector, pod.labels))
    return no(
      `its labels do not match ${kind === "CronJob" ? `Job ${rev.name}` : `${kind} ${w.workload.name}`}'s selector`,
    );
  if (!rev.fingerprint) return no(`${rev.kind} ${rev.name} holds no pod template`);
  if (rev.fingerprint.exact === w.fingerprint.exact) return { ok: true, revision: "current" };
  if (rev.fingerprint.base === w.fingerprint.base) return { ok: true, revision: "previous" };
  return no(
    `${rev.kind} ${rev.name} holds neither ${kind} ${w.workload.name}'s current template nor the one before its last restart`,
  );
}

/** What the pod names that its workload's template does not: ignored, and logged. */
export function claimsOutsideTemplate(pod: PodView, refs: readonly WatchedRef[]): string[] {
  const known = new Set(refs.map(versionKey));
  const outside = new Set<string>();
  for (const r of pod.refs) if (!known.has(versionKey(r))) outside.add(describeRef(r));
  for (const r of pod.fetched.records ?? []) if (!known.has(versionKey(r))) outside.add(describeRef(r));
  return [...outside].sort();
}

const describeRef = (r: { secretId: string; region: string; stage: string }) =>
  `${r.secretId} ${r.stage}${r.region ? ` (${r.region})` : ""}`;

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
 * What the pod says is old, among the TEMPLATE's references only (`refs`). Unknown current versions
 * (a failed DescribeSecret) never count as a change: fail safe, no restart on missing information.
 */
export function changesFor(pod: PodView, refs: readonly WatchedRef[], current: CurrentVersions): Change[] {
  if (pod.fetched.records) {
    const had = new Map(pod.fetched.records.map((r) => [versionKey(r), r.versionId]));
    const changes: Change[] = [];
    for (const ref of refs) {
      const key = versionKey(ref);
      const from = had.get(key);
      const to = current.get(key);
      if (from === undefined || to === undefined || to === null || to === from) continue;
      changes.push({ secretId: ref.secretId, region: ref.region, stage: ref.stage, from, to });
    }
    return changes;
  }
  // Digest only (many secrets): compare with the digest of what is current now. An optional
  // reference that points at nothing was not recorded by the init container either: left out.
  // Anything else unknown or gone means no decision (never restart into a missing required secret).
  const now = currentRecords(refs, current);
  if (typeof now === "string") return [];
  if (versionsDigest(now) === pod.fetched.digest) return [];
  return now.map((r) => ({ secretId: r.secretId, region: r.region, stage: r.stage, to: r.versionId }));
}

/** The template's references with their current versions; a string says why that is not known. */
function currentRecords(
  refs: readonly WatchedRef[],
  current: CurrentVersions,
): Array<WatchedRef & { versionId: string }> | string {
  const now: Array<WatchedRef & { versionId: string }> = [];
  for (const ref of refs) {
    const v = current.get(versionKey(ref));
    if (v === undefined) return `the versions of ${describeRef(ref)} are unknown (DescribeSecret failed)`;
    if (v === null) {
      if (ref.optional) continue;
      return `${describeRef(ref)} is on no version: nothing to restart into`;
    }
    now.push({ ...ref, versionId: v });
  }
  return now;
}

/**
 * The `restarted-for` marker: the current versions of ALL the template's watched references, not
 * what any pod claims. It changes only when a version really changes, so claims about old versions
 * (true or forged) restart a workload at most once per real change. A string: no marker (unknown).
 */
export function restartMarker(
  refs: readonly WatchedRef[],
  current: CurrentVersions,
): { marker: string } | string {
  const now = currentRecords(refs, current);
  if (typeof now === "string") return now;
  return { marker: versionsDigest(now).slice(0, 32) };
}

/** Human-readable and value-free: "erp/production/database AWSCURRENT 1a2b3c4d→5e6f7a8b (us-east-1)". */
export function describeChange(c: Change): string {
  const short = (v: string | null | undefined) => (v ? v.slice(0, 8) : "?");
  return `${c.secretId} ${c.stage} ${short(c.from)}→${short(c.to)}${c.region ? ` (${c.region})` : ""}`;
}

/** A verified workload with stale pods: the restart it would get. */
export interface RestartCandidate {
  workload: Workload;
  changes: Change[];
  pods: string[];
  marker: string;
  /** The template's rotation.sm-injector.io/ annotations now. */
  rotationAnnotations: Record<string, string>;
}

export interface RestartDecision {
  workload: Workload;
  changes: Change[];
  pods: string[];
  /** Identifies the current versions: a workload is restarted once for them. */
  marker: string;
}

/** The restart a verified workload gets from its stale pods, or why it gets none. */
export function restartCandidate(
  w: WorkloadFacts,
  stale: ReadonlyArray<{ pod: string; changes: readonly Change[] }>,
  current: CurrentVersions,
): RestartCandidate | { why: string } | undefined {
  if (stale.length === 0 || !Array.isArray(w.refs)) return undefined;
  const m = restartMarker(w.refs, current);
  if (typeof m === "string") return { why: m };
  const changes = new Map<string, Change>();
  for (const s of stale) for (const c of s.changes) changes.set(`${versionKey(c)}→${c.from}→${c.to}`, c);
  return {
    workload: w.workload,
    changes: [...changes.values()].sort((a, b) => versionKey(a).localeCompare(versionKey(b))),
    pods: stale.map((s) => s.pod).sort(),
    marker: m.marker,
    rotationAnnotations: w.rotationAnnotations,
  };
}

/**
 * Which candidates to restart now: not one already restarted for these versions (its rollout is
 * under way, or nothing changed since), nor one restarted too recently.
 */
export function decideRestarts(
  candidates: readonly RestartCandidate[],
  opts: { now: number; minIntervalMs: number },
): { restart: RestartDecision[]; held: Array<{ workload: Workload; why: string }> } {
  const restart: RestartDecision[] = [];
  const held: Array<{ workload: Workload; why: string }> = [];
  for (const c of candidates) {
    const annotations = c.rotationAnnotations;
    if (annotations[RESTARTED_FOR_ANNOTATION] === c.marker) {
      held.push({
        workload: c.workload,
        why: "already restarted for these versions (rollout in progress, or nothing changed since)",
      });
      continue;
    }
    const last = Date.parse(annotations[RESTARTED_AT_ANNOTATION] ?? "");
    if (Number.isFinite(last) && opts.now - last < opts.minIntervalMs) {
      held.push({
        workload: c.workload,
        why: `restarted ${Math.round((opts.now - last) / 1000)} s ago (minimum interval ${Math.round(opts.minIntervalMs / 1000)} s)`,
      });
      continue;
    }
    restart.push({ workload: c.workload, changes: c.changes, pods: c.pods, marker: c.marker });
  }
  return { restart, held };
}
