// The review of a cluster's secrets: every workload labelled for injection (Deployments,
// StatefulSets, DaemonSets, CronJobs), the secrets its template references, the versions its running
// pods started with, each secret's rotation state (DescribeSecret: metadata, never a value) and who
// else reads it. `sm-injector report` prints it; the rotation controller exports it as metrics.
//
// It reads what the rotation controller reads, with the controller's own code and distrust: a pod's
// recorded versions count only once the pod is verified to belong to the workload (verifyPod:
// owner, ReplicaSet/ControllerRevision/Job, selector, template), and only for the references of the
// workload's TEMPLATE; anything else a pod names is left out.

import { versionKey } from "../contract/fetched-versions.ts";
import { forEachBounded } from "../fetch/bounded.ts";
import {
  type CheckShare,
  errorCode,
  FactCache,
  type ListedWorkload,
  type ReviewReads,
  type RotationDeps,
  type SecretDescription,
  verifyPod,
} from "../rotation/controller.ts";
import {
  changesFor,
  injectedPodView,
  type PodView,
  REVIEWED_OWNERS,
  type TemplateRef,
  templateInjected,
  templateReferences,
  type WatchedRef,
} from "../rotation/plan.ts";
import { MAX_SECRET_AGE_ANNOTATION, namespaceMaxSecretAge, secretAgeSeconds } from "./max-age.ts";
import { formatAge } from "./render.ts";

export type ReviewDeps = RotationDeps & ReviewReads;

export interface ReviewOptions {
  /** Region of references that name none (the webhook's default region). */
  defaultRegion?: string | undefined;
  /** DescribeSecret calls in flight. */
  concurrency?: number;
}

/** A running pod of the workload and the version of one reference it started with. */
export interface PodVersion {
  pod: string;
  /** Undefined when the pod recorded only a digest of its versions (too many to list). */
  versionId?: string;
  /** The reference's stage points at another version now; undefined when that is unknown. */
  superseded?: boolean;
}

export interface ReferenceReview {
  secretId: string;
  region: string;
  /** The stage read (AWSCURRENT unless the reference says otherwise); absent for a pinned version. */
  stage?: string;
  /** A pinned version id. */
  pinnedVersionId?: string;
  /** The version the stage points at now (null: none; absent: unknown). */
  currentVersionId?: string | null;
  pods: PodVersion[];
  /** Other workloads whose templates reference the same secret (kind/namespace/name). */
  alsoReadBy: string[];
}

export interface WorkloadReview {
  kind: ListedWorkload["kind"];
  namespace: string;
  name: string;
  /** Running pods verified to belong to its template. */
  pods: number;
  references: ReferenceReview[];
  /** Why its references cannot be known (annotations that do not compile). */
  error?: string;
  /** Its namespace's sm-injector.io/max-secret-age. */
  maxSecretAge?: { text: string; seconds: number } | { text: string; error: string };
  /** Secrets it reads that are older than that (secretId (region)). */
  overMaxAge: string[];
}

export interface SecretReview {
  secretId: string;
  region: string;
  rotationEnabled?: boolean;
  lastRotatedDate?: string;
  lastChangedDate?: string;
  nextRotationDate?: string;
  /** Seconds since last rotated, else last changed, else created (see secretAgeSeconds). */
  ageSeconds?: number;
  /** DescribeSecret's error code, when it failed. */
  error?: string;
  /** The workloads whose templates reference it (kind/namespace/name). */
  readers: string[];
  /** Verified running pods on a version of it that its stage no longer points at. */
  supersededPods: number;
  /** The smallest max-secret-age of the namespaces of its readers, in seconds. */
  maxAgeSeconds?: number;
}

export interface Review {
  generatedAt: string;
  workloads: WorkloadReview[];
  secrets: SecretReview[];
  /** Pods that claim to be injected but could not be verified (their claims are left out). */
  unverifiedPods: Array<{ namespace: string; pod: string; why: string }>;
}

const workloadId = (w: { kind: string; namespace: string; name: string }) =>
  `${w.kind}/${w.namespace}/${w.name}`;
const secretKey = (r: { region: string; secretId: string }) => JSON.stringify([r.region, r.secretId]);

interface Listed {
  /** As listed, without its template (only the facts derived from it are kept). */
  workload: Omit<ListedWorkload, "template" | "selector">;
  refs: TemplateRef[] | { error: string };
  pods: PodView[];
}

/** Every workload whose pod template is labelled for injection, with its template's references. */
async function listInjectedWorkloads(deps: ReviewDeps, cache: FactCache, defaultRegion: string | undefined) {
  const listed = new Map<string, Listed>();
  for await (const page of deps.workloadPages())
    for (const w of page) {
      if (templateInjected(w.template)) continue;
      // The facts verification needs, now: the page (and its templates) is dropped after it.
      cache.remember(w);
      const { kind, namespace, name, uid } = w;
      listed.set(workloadId(w), {
        workload: { kind, namespace, name, uid },
        refs: templateReferences(w.template, defaultRegion),
        pods: [],
      });
    }
  return listed;
}

/** The running injected pods as the review sees them: the check's, when it read them all, else listed. */
async function* reviewedPodPages(
  deps: ReviewDeps,
  fromCheck: PodView[] | undefined,
): AsyncGenerator<PodView[]> {
  if (fromCheck) {
    yield fromCheck;
    return;
  }
  for await (const page of deps.podPages())
    yield page.map((p) => injectedPodView(p, REVIEWED_OWNERS)).filter((v): v is PodView => !("skip" in v));
}

/** The running injected pods, each verified against its workload, added to that workload. */
async function attachVerifiedPods(
  deps: ReviewDeps,
  cache: FactCache,
  listed: Map<string, Listed>,
  opts: ReviewOptions,
  fromCheck: PodView[] | undefined,
) {
  const unverified: Review["unverifiedPods"] = [];
  for await (const views of reviewedPodPages(deps, fromCheck)) {
    // Each pod costs a GET of its ReplicaSet, ControllerRevision or Job (cached per review): in parallel.
    await forEachBounded(views, opts.concurrency ?? 8, async (view) => {
      const v = await verifyPod(view, cache, true);
      const entry = v.ok ? listed.get(workloadId(v.facts.workload)) : undefined;
      if (!v.ok) unverified.push({ namespace: view.namespace, pod: view.name, why: v.why });
      else if (entry) entry.pods.push(view);
    });
  }
  for (const l of listed.values()) l.pods.sort((a, b) => a.name.localeCompare(b.name));
  return unverified.sort((a, b) => `${a.namespace}/${a.pod}`.localeCompare(`${b.namespace}/${b.pod}`));
}

/** One DescribeSecret per distinct (region, secret) referenced; an error code where it failed. */
async function describeAll(deps: ReviewDeps, listed: Iterable<Listed>, concurrency: number) {
  const secrets = new Map<string, { region: string; secretId: string }>();
  for (const l of listed)
    if (Array.isArray(l.refs))
      for (const r of l.refs) secrets.set(secretKey(r), { region: r.region, secretId: r.secretId });
  const described = new Map<string, SecretDescription | { error: string }>();
  await forEachBounded([...secrets.values()], concurrency, async (s) => {
    try {
      described.set(secretKey(s), await deps.describeSecret(s.region, s.secretId));
    } catch (e) {
      described.set(secretKey(s), { error: errorCode(e) });
    }
  });
  return described;
}

/** versionKey(ref) → the version its stage points at now (null: none), for refs whose secret was described. */
function currentVersions(
  refs: readonly TemplateRef[],
  described: Map<string, SecretDescription | { error: string }>,
) {
  const current = new Map<string, string | null>();
  for (const r of refs) {
    const d = described.get(secretKey(r));
    if (!d || "error" in d) continue;
    current.set(
      versionKey(r),
      Object.entries(d.versionStages).find(([, st]) => st.includes(r.stage))?.[0] ?? null,
    );
  }
  return current;
}

/** One reference of a workload: its current version and what each verified pod started with. */
function reviewReference(
  ref: TemplateRef,
  pods: readonly PodView[],
  watched: readonly WatchedRef[],
  current: Map<string, string | null>,
): ReferenceReview {
  const key = versionKey(ref);
  const base = { secretId: ref.secretId, region: ref.region, alsoReadBy: [] as string[] };
  if (ref.versionId !== undefined)
    return {
      ...base,
      pinnedVersionId: ref.versionId,
      pods: pods.map((p) => ({ pod: p.name, versionId: ref.versionId as string, superseded: false })),
    };
  const now = current.get(key);
  return {
    ...base,
    stage: ref.stage,
    ...(now !== undefined && { currentVersionId: now }),
    pods: pods.map((p) => {
      const had = p.fetched.records?.find((r) => versionKey(r) === key)?.versionId;
      const known = now !== undefined && (had !== undefined || p.fetched.records === undefined);
      const superseded = changesFor(p, watched, current).some((c) => versionKey(c) === key);
      return { pod: p.name, ...(had !== undefined && { versionId: had }), ...(known && { superseded }) };
    }),
  };
}

/** The distinct references of a template: one per (secret, region, stage or pinned version). */
function distinctRefs(refs: readonly TemplateRef[]): TemplateRef[] {
  const seen = new Map<string, TemplateRef>();
  for (const r of refs) seen.set(`${versionKey(r)}|${r.versionId ?? ""}`, r);
  return [...seen.values()];
}

async function namespaceLimits(deps: ReviewDeps, namespaces: Iterable<string>) {
  const limits = new Map<string, WorkloadReview["maxSecretAge"]>();
  for (const ns of new Set(namespaces))
    limits.set(ns, namespaceMaxSecretAge(await deps.namespaceAnnotations(ns)));
  return limits;
}

function secretReview(
  region: string,
  secretId: string,
  d: SecretDescription | { error: string } | undefined,
  now: number,
): SecretReview {
  const base: SecretReview = { secretId, region, readers: [], supersededPods: 0 };
  if (!d) return base;
  if ("error" in d) return { ...base, error: d.error };
  const age = secretAgeSeconds(d, now);
  return {
    ...base,
    rotationEnabled: d.rotationEnabled,
    ...(d.lastRotatedDate && { lastRotatedDate: d.lastRotatedDate.toISOString() }),
    ...(d.lastChangedDate && { lastChangedDate: d.lastChangedDate.toISOString() }),
    ...(d.nextRotationDate && { nextRotationDate: d.nextRotationDate.toISOString() }),
    ...(age !== undefined && { ageSeconds: age }),
  };
}

/**
 * Reviews the cluster (one namespace, or all). Reads only: lists, gets and DescribeSecret. Right
 * after a rotation check (`share`, see CheckShare) it reuses that check's reads of the pods and of
 * their owners, as of the check, instead of making them again.
 */
export async function reviewCluster(
  deps: ReviewDeps,
  opts: ReviewOptions = {},
  share?: CheckShare,
): Promise<Review> {
  const now = (deps.now ?? Date.now)();
  share?.cache?.forgetFailures();
  const cache = share?.cache ?? new FactCache(deps, opts.defaultRegion);
  const listed = await listInjectedWorkloads(deps, cache, opts.defaultRegion);
  const unverifiedPods = await attachVerifiedPods(deps, cache, listed, opts, share?.reviewedPods);
  const described = await describeAll(deps, listed.values(), opts.concurrency ?? 8);
  const limits = await namespaceLimits(
    deps,
    [...listed.values()].map((l) => l.workload.namespace),
  );
  const secrets = new Map<string, SecretReview>();
  const secretOf = (r: { region: string; secretId: string }): SecretReview => {
    const key = secretKey(r);
    const known = secrets.get(key);
    if (known) return known;
    const s = secretReview(r.region, r.secretId, described.get(key), now);
    secrets.set(key, s);
    return s;
  };
  const ordered = [...listed.values()].sort((a, b) =>
    workloadId(a.workload).localeCompare(workloadId(b.workload)),
  );
  const workloads = ordered.map((l) =>
    reviewWorkload(l, limits.get(l.workload.namespace), described, secretOf),
  );
  for (const w of workloads)
    for (const r of w.references) r.alsoReadBy = secretOf(r).readers.filter((id) => id !== workloadId(w));
  return {
    generatedAt: new Date(now).toISOString(),
    workloads,
    secrets: [...secrets.values()].sort((a, b) => secretKey(a).localeCompare(secretKey(b))),
    unverifiedPods,
  };
}

/** One workload's references and pods; counts its readings and stale pods into each secret's review. */
function reviewWorkload(
  l: Listed,
  maxSecretAge: WorkloadReview["maxSecretAge"],
  described: Map<string, SecretDescription | { error: string }>,
  secretOf: (r: { region: string; secretId: string }) => SecretReview,
): WorkloadReview {
  const { kind, namespace, name } = l.workload;
  const review: WorkloadReview = {
    kind,
    namespace,
    name,
    pods: l.pods.length,
    references: [],
    overMaxAge: [],
    ...(maxSecretAge && { maxSecretAge }),
  };
  if (!Array.isArray(l.refs)) return { ...review, error: l.refs.error };
  const refs = distinctRefs(l.refs);
  const watched = refs.filter((r) => r.versionId === undefined);
  const current = currentVersions(refs, described);
  const limit = maxSecretAge && "seconds" in maxSecretAge ? maxSecretAge.seconds : undefined;
  for (const ref of refs) {
    const r = reviewReference(ref, l.pods, watched, current);
    review.references.push(r);
    const s = secretOf(ref);
    if (!s.readers.includes(workloadId(review))) s.readers.push(workloadId(review));
    s.supersededPods += r.pods.filter((p) => p.superseded).length;
    if (limit === undefined) continue;
    s.maxAgeSeconds = Math.min(s.maxAgeSeconds ?? Number.POSITIVE_INFINITY, limit);
    const what = `${ref.secretId}${ref.region ? ` (${ref.region})` : ""}`;
    if (s.ageSeconds !== undefined && s.ageSeconds > limit && !review.overMaxAge.includes(what))
      review.overMaxAge.push(what);
  }
  return review;
}

/** Most secrets a warning names (an Event's message is cut at 1 KiB). */
const WARNING_SECRETS = 10;

/**
 * One warning per workload that reads secrets older than its namespace's max-secret-age, naming
 * them with their ages (secret ids and durations only).
 */
export function maxAgeWarnings(
  review: Review,
): Array<{ workload: Pick<WorkloadReview, "kind" | "namespace" | "name">; message: string; key: string }> {
  const ages = new Map(
    review.secrets.map((s) => [`${s.secretId}${s.region ? ` (${s.region})` : ""}`, s.ageSeconds]),
  );
  return review.workloads
    .filter((w) => w.overMaxAge.length > 0)
    .map((w) => {
      const named = w.overMaxAge.slice(0, WARNING_SECRETS).map((s) => `${s} ${formatAge(ages.get(s))} old`);
      const more =
        w.overMaxAge.length > WARNING_SECRETS ? ` and ${w.overMaxAge.length - WARNING_SECRETS} more` : "";
      return {
        workload: { kind: w.kind, namespace: w.namespace, name: w.name },
        // What the warning is about (not the ages in its message, which grow): its Event's identity.
        key: `${w.maxSecretAge?.text}\n${w.overMaxAge.join("\n")}`,
        message: `reads secrets older than its namespace's ${MAX_SECRET_AGE_ANNOTATION} (${w.maxSecretAge?.text}): ${named.join(", ")}${more}; rotate them (or enable Secrets Manager rotation), then restart the workload`,
      };
    });
}
