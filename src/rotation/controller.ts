// `sm-injector rotation`: restarts workloads whose pods run with a secret version that is no longer
// the one their reference points at (a rotation, a PutSecretValue, a stage moved back).
//
// Each cycle: stream the running pods labelled sm-injector.io/inject=true page by page, keeping a
// small view of those that say they are watched; verify each one against objects its author cannot
// write (its ReplicaSet or ControllerRevision, its workload's selector and pod template, which must
// opt in itself); ask Secrets Manager which version each stage the TEMPLATES reference points at now
// (DescribeSecret: metadata only, never a value); and give each workload with a stale pod a rolling
// restart by stamping its pod template, as `kubectl rollout restart` does, so its strategy and
// PodDisruptionBudgets pace it. A workload is restarted once per set of current versions of its
// template's secrets, and not more often than the minimum interval. See src/rotation/plan.ts for what
// is trusted. It needs AWS credentials for secretsmanager:DescribeSecret only.
// Static: a dynamic import() of the SDK is its CommonJS build in the bundle (no constructors on the
// namespace). This module is itself imported lazily, by `sm-injector rotation` only.

import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import v8 from "node:v8";
import vm from "node:vm";
import { DescribeSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type {
  KubeConfig,
  V1LabelSelector,
  V1OwnerReference,
  V1Pod,
  V1PodTemplateSpec,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { INJECT_LABEL } from "../contract/annotations.ts";
import { versionKey } from "../contract/fetched-versions.ts";
import { forEachBounded } from "../fetch/bounded.ts";
import {
  type Change,
  CONTROLLER_REVISION_HASH_LABEL,
  changesFor,
  claimsOutsideTemplate,
  controllerRevisionTemplate,
  decideRestarts,
  describeChange,
  injectedPodView,
  type OwnerRef,
  POD_TEMPLATE_HASH_LABEL,
  type PodView,
  podView,
  RESTARTED_AT_ANNOTATION,
  RESTARTED_FOR_ANNOTATION,
  REVIEWED_OWNERS,
  type RestartCandidate,
  type RestartDecision,
  type RevisionFacts,
  restartCandidate,
  revisionName,
  templateFingerprint,
  verifyMembership,
  type WatchedRef,
  type Workload,
  type WorkloadFacts,
  workloadFacts,
} from "./plan.ts";

/** A ReplicaSet, ControllerRevision or Job as read: only what verification needs. */
export interface RevisionObject {
  uid: string;
  controller: OwnerRef | undefined;
  labels: Record<string, string>;
  /** ReplicaSet, Job: spec.template; ControllerRevision: its data (`{"spec":{"template":…}}`). */
  template: V1PodTemplateSpec | undefined;
  /** A Job's selector. */
  selector?: V1LabelSelector | undefined;
}

/** What DescribeSecret says about a secret: metadata only, never a value. */
export interface SecretDescription {
  /** Version id → its stages. */
  versionStages: Record<string, string[]>;
  rotationEnabled: boolean;
  lastRotatedDate?: Date | undefined;
  lastChangedDate?: Date | undefined;
  nextRotationDate?: Date | undefined;
  createdDate?: Date | undefined;
}

export interface RotationDeps {
  /**
   * Running pods labelled for injection (in one namespace, or all), one page at a time: the cycle
   * keeps a small view of each pod and drops the page before asking for the next.
   */
  podPages(): AsyncIterable<V1Pod[]>;
  /** A ReplicaSet; undefined when it does not exist. */
  replicaSet(namespace: string, name: string): Promise<RevisionObject | undefined>;
  /** A ControllerRevision (template taken from its data); undefined when it does not exist. */
  controllerRevision(namespace: string, name: string): Promise<RevisionObject | undefined>;
  /** A Job (a CronJob's pods belong to one); undefined when it does not exist. Only `sm-injector report` asks. */
  job?(namespace: string, name: string): Promise<RevisionObject | undefined>;
  /** A workload's uid, selector and pod template; undefined when it is gone. */
  workload(
    kind: Workload["kind"],
    namespace: string,
    name: string,
  ): Promise<
    | { uid: string; selector: V1LabelSelector | undefined; template: V1PodTemplateSpec | undefined }
    | undefined
  >;
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
  /**
   * Region of references that name none (the webhook's default region): the controller's own
   * AWS_REGION. Without it such references cannot be watched.
   */
  defaultRegion?: string;
}

export interface CycleReport {
  /** Pods read (running, labelled for injection). */
  pods: number;
  /** Pods verified to belong to an opted-in workload's template. */
  watchedPods: number;
  /** Pods that claim to be watched (restart-on-rotation, injected) but could not be verified. */
  unverifiedPods: number;
  secrets: number;
  describeErrors: number;
  stalePods: number;
  restarted: RestartDecision[];
  restartErrors: number;
  held: Array<{ workload: Workload | string; why: string }>;
}

/** An AWS or Kubernetes error's code (its name, else its code), never its message. */
export function errorCode(e: unknown): string {
  const err = e as { name?: string; code?: string | number };
  return String(err.name && err.name !== "Error" ? err.name : (err.code ?? "Error"));
}

const workloadKey = (kind: string, namespace: string, name: string) => `${kind}/${namespace}/${name}`;

/** Reads each workload and template revision once per cycle, reduced to small facts at once. */
export class FactCache {
  private workloads = new Map<string, Promise<WorkloadFacts | undefined>>();
  private revisions = new Map<string, Promise<RevisionFacts | undefined>>();
  /** How to drop each read that failed (see forgetFailures). */
  private failures: Array<() => void> = [];
  constructor(
    private deps: RotationDeps,
    private defaultRegion: string | undefined,
  ) {}

  workload(kind: Workload["kind"], namespace: string, name: string): Promise<WorkloadFacts | undefined> {
    const key = workloadKey(kind, namespace, name);
    let p = this.workloads.get(key);
    if (!p) {
      p = this.deps
        .workload(kind, namespace, name)
        .then(
          (o) =>
            o &&
            workloadFacts({ kind, namespace, name, uid: o.uid }, o.selector, o.template, this.defaultRegion),
        );
      this.workloads.set(key, p);
      this.onFailure(p, () => this.workloads.get(key) === p && this.workloads.delete(key));
    }
    return p;
  }

  private onFailure(p: Promise<unknown>, drop: () => void): void {
    p.catch(() => this.failures.push(drop));
  }

  /**
   * Drops the reads that failed, so that whoever uses the cache next (the review after a check)
   * reads them again rather than inheriting the check's error. Within one check a failed read is kept:
   * the pods of one owner cost one failed GET, not one each.
   */
  forgetFailures(): void {
    for (const drop of this.failures.splice(0)) drop();
  }

  /** A workload already read (listed): its facts without reading it again. */
  remember(w: ListedWorkload): void {
    const { kind, namespace, name, uid } = w;
    const facts = workloadFacts({ kind, namespace, name, uid }, w.selector, w.template, this.defaultRegion);
    this.workloads.set(workloadKey(kind, namespace, name), Promise.resolve(facts));
  }

  revision(kind: RevisionFacts["kind"], namespace: string, name: string): Promise<RevisionFacts | undefined> {
    const key = workloadKey(kind, namespace, name);
    let p = this.revisions.get(key);
    if (!p) {
      const read = this.read(kind, namespace, name);
      p = read.then(
        (o) =>
          o && {
            kind,
            name,
            uid: o.uid,
            controller: o.controller,
            hash: o.labels[kind === "ReplicaSet" ? POD_TEMPLATE_HASH_LABEL : CONTROLLER_REVISION_HASH_LABEL],
            fingerprint: o.template && templateFingerprint(o.template),
            ...(o.selector && { selector: o.selector }),
          },
      );
      this.revisions.set(key, p);
      this.onFailure(p, () => this.revisions.get(key) === p && this.revisions.delete(key));
    }
    return p;
  }

  private read(kind: RevisionFacts["kind"], namespace: string, name: string) {
    if (kind === "ReplicaSet") return this.deps.replicaSet(namespace, name);
    if (kind === "ControllerRevision") return this.deps.controllerRevision(namespace, name);
    return this.deps.job ? this.deps.job(namespace, name) : Promise.resolve(undefined);
  }
}

/** The pod controllers that hold a template of their own, and the workload that must control them. */
const REVISION_OWNERS = {
  ReplicaSet: { apiVersion: "apps/v1", workload: "Deployment" },
  Job: { apiVersion: "batch/v1", workload: "CronJob" },
} as const;

/** The ReplicaSet or Job a pod names and the workload that controls it, or why there is none. */
async function throughRevision(
  kind: keyof typeof REVISION_OWNERS,
  namespace: string,
  name: string,
  cache: FactCache,
): Promise<{ rev: RevisionFacts; facts: WorkloadFacts } | string> {
  const { apiVersion, workload } = REVISION_OWNERS[kind];
  const rev = await cache.revision(kind, namespace, name);
  if (!rev) return `its ${kind} ${name} does not exist`;
  const c = rev.controller;
  if (c?.apiVersion !== apiVersion || c.kind !== workload)
    return `its ${kind} ${name} is not controlled by a ${workload}`;
  const facts = await cache.workload(workload, namespace, c.name);
  return facts ? { rev, facts } : `${workload} ${c.name} does not exist`;
}

export type Verified =
  | { ok: true; facts: WorkloadFacts; revision: "current" | "previous" }
  | { ok: false; why: string };

/**
 * The workload whose template the pod verifiably belongs to, or why there is none. The workload
 * must opt in to restarts, or (`injectedOnly`, for a review) only be labelled for injection.
 */
export async function verifyPod(pod: PodView, cache: FactCache, injectedOnly = false): Promise<Verified> {
  const no = (why: string): Verified => ({ ok: false, why });
  const owner = pod.owner;
  const isJob = injectedOnly && owner?.apiVersion === "batch/v1" && owner.kind === "Job";
  if (
    !isJob &&
    (owner?.apiVersion !== "apps/v1" || !["ReplicaSet", "StatefulSet", "DaemonSet"].includes(owner.kind))
  )
    return no(
      `owned by ${owner?.kind}/${owner?.name} (${owner?.apiVersion}), which this controller does not roll`,
    );
  if (!owner) return no("no controller");
  try {
    let facts: WorkloadFacts | undefined;
    let rev: RevisionFacts | undefined;
    if (owner.kind === "ReplicaSet" || isJob) {
      const found = await throughRevision(
        owner.kind as "ReplicaSet" | "Job",
        pod.namespace,
        owner.name,
        cache,
      );
      if (typeof found === "string") return no(found);
      ({ rev, facts } = found);
    } else {
      const kind = owner.kind as "StatefulSet" | "DaemonSet";
      facts = await cache.workload(kind, pod.namespace, owner.name);
      if (!facts) return no(`${kind} ${owner.name} does not exist`);
      const name = revisionName(pod, kind);
      if (!name) return no(`it has no ${CONTROLLER_REVISION_HASH_LABEL} label`);
      rev = await cache.revision("ControllerRevision", pod.namespace, name);
      if (!rev) return no(`ControllerRevision ${name} does not exist`);
    }
    const { kind, name } = facts.workload;
    const notOptedIn = injectedOnly ? facts.notInjected : facts.notOptedIn;
    if (notOptedIn) return no(`${kind} ${name} did not opt in: ${notOptedIn}`);
    const member = verifyMembership(pod, facts, rev);
    if (!member.ok) return no(member.why);
    if (!Array.isArray(facts.refs)) return no(`${kind} ${name}: ${facts.refs.error}`);
    return { ok: true, facts, revision: member.revision };
  } catch (e) {
    return no(`cannot read its workload (${errorCode(e)}); next check`);
  }
}

/**
 * What a check hands the review that follows it (`sm-injector rotation --metrics-port`), so that the
 * review reads neither the pods nor their owners a second time.
 */
export interface CheckShare {
  /** The check's reads of workloads, ReplicaSets, ControllerRevisions and Jobs, reduced to facts. */
  cache?: FactCache;
  /**
   * The review's view of every running injected pod (its owners include a CronJob's Jobs, which the
   * check does not watch): set only once the check has read every page, else the review lists them.
   */
  reviewedPods?: PodView[];
}

/**
 * `deps` whose DescribeSecret is called once per secret for as long as they are used (one check and
 * its review): the check's version stages and the review's descriptions are then one call.
 */
export function describedOnce<D extends RotationDeps & Pick<ReviewReads, "describeSecret">>(deps: D): D {
  const seen = new Map<string, Promise<SecretDescription>>();
  const describeSecret = (region: string, secretId: string) => {
    const key = JSON.stringify([region, secretId]);
    let p = seen.get(key);
    if (!p) {
      p = deps.describeSecret(region, secretId);
      seen.set(key, p);
      // A failure is not kept: the review asks again.
      p.catch(() => seen.delete(key));
    }
    return p;
  };
  return {
    ...deps,
    describeSecret,
    versionStages: async (region: string, secretId: string) =>
      (await describeSecret(region, secretId)).versionStages,
  };
}

/**
 * Streams the pods page by page and keeps only the small view of each watched one — and, for the
 * review after the check (`share`), of each injected one.
 */
async function readPods(deps: RotationDeps, share?: CheckShare): Promise<{ pods: number; views: PodView[] }> {
  let pods = 0;
  const views: PodView[] = [];
  const reviewed: PodView[] = [];
  for await (const page of deps.podPages()) {
    pods += page.length;
    for (const p of page) {
      const v = podView(p);
      if ("skip" in v)
        deps.log.debug({ namespace: v.namespace, pod: v.name, why: v.skip }, "pod not watched");
      else views.push(v);
      if (!share) continue;
      // A watched pod's view is the review's too (its owners are a subset of the review's).
      const r = "skip" in v ? injectedPodView(p, REVIEWED_OWNERS) : v;
      if (!("skip" in r)) reviewed.push(r);
    }
  }
  if (share) share.reviewedPods = reviewed;
  return { pods, views };
}

/** What each watched stage points at now: one DescribeSecret per (secret, region). */
async function readCurrentVersions(
  deps: RotationDeps,
  refs: readonly WatchedRef[],
  concurrency: number,
): Promise<{ current: Map<string, string | null>; secrets: number; errors: number }> {
  const secrets = new Map<string, { region: string; secretId: string; refs: WatchedRef[] }>();
  for (const ref of refs) {
    const key = JSON.stringify([ref.region, ref.secretId]);
    const s = secrets.get(key) ?? { region: ref.region, secretId: ref.secretId, refs: [] };
    if (!s.refs.some((r) => r.stage === ref.stage)) s.refs.push(ref);
    secrets.set(key, s);
  }
  const current = new Map<string, string | null>();
  let errors = 0;
  await forEachBounded([...secrets.values()], concurrency, async (s) => {
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
      errors++;
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
  return { current, secrets: secrets.size, errors };
}

export async function rotationCycle(
  deps: RotationDeps,
  opts: RotationOptions,
  share?: CheckShare,
): Promise<CycleReport> {
  const now = (deps.now ?? Date.now)();
  const cache = new FactCache(deps, opts.defaultRegion);
  if (share) share.cache = cache;
  const { pods, views } = await readPods(deps, share);

  // Only pods verified to belong to an opted-in workload's template count, grouped by workload.
  const held: CycleReport["held"] = [];
  const verified = new Map<string, { facts: WorkloadFacts; pods: PodView[] }>();
  let unverifiedPods = 0;
  for (const pod of views) {
    const v = await verifyPod(pod, cache);
    if (!v.ok) {
      unverifiedPods++;
      deps.log.warn(
        {
          namespace: pod.namespace,
          pod: pod.name,
          owner: pod.owner && `${pod.owner.kind}/${pod.owner.name}`,
          why: v.why,
        },
        "pod not trusted: it claims to be watched, but its workload does not vouch for it; ignored",
      );
      continue;
    }
    const { kind, namespace, name } = v.facts.workload;
    const key = workloadKey(kind, namespace, name);
    const group = verified.get(key) ?? { facts: v.facts, pods: [] };
    group.pods.push(pod);
    verified.set(key, group);
  }

  // The TEMPLATES' references are the ones watched: a pod cannot add a secret to the list.
  const allRefs = [...verified.values()].flatMap((g) => g.facts.refs as WatchedRef[]);
  const { current, secrets, errors } = await readCurrentVersions(deps, allRefs, opts.concurrency ?? 8);

  const candidates: RestartCandidate[] = [];
  let stalePods = 0;
  for (const { facts, pods: members } of verified.values()) {
    const refs = facts.refs as WatchedRef[];
    const stale: Array<{ pod: string; changes: Change[] }> = [];
    for (const pod of members) {
      const outside = claimsOutsideTemplate(pod, refs);
      if (outside.length > 0)
        deps.log.warn(
          {
            namespace: pod.namespace,
            pod: pod.name,
            workload: `${facts.workload.kind}/${facts.workload.name}`,
            ignored: outside.slice(0, 10),
          },
          "pod names secrets its workload's template does not reference; ignored",
        );
      const changes = changesFor(pod, refs, current);
      if (changes.length > 0) stale.push({ pod: pod.name, changes });
    }
    stalePods += stale.length;
    const c = restartCandidate(facts, stale, current);
    if (!c) continue;
    if ("why" in c) {
      held.push({ workload: facts.workload, why: c.why });
      deps.log.info({ ...facts.workload, why: c.why }, "stale pods, restart held");
    } else candidates.push(c);
  }

  const decision = decideRestarts(candidates, { now, minIntervalMs: opts.minRestartIntervalMs });
  held.push(...decision.held);
  for (const h of decision.held) deps.log.info({ ...h.workload, why: h.why }, "stale pods, restart held");
  const { restarted, restartErrors } = await restart(deps, opts, decision.restart, held, now);
  return {
    pods,
    watchedPods: views.length - unverifiedPods,
    unverifiedPods,
    secrets,
    describeErrors: errors,
    stalePods,
    restarted,
    restartErrors,
    held,
  };
}

/** Stamps the templates (at most maxRestartsPerCheck), or logs what a dry run would do. */
async function restart(
  deps: RotationDeps,
  opts: RotationOptions,
  decisions: readonly RestartDecision[],
  held: CycleReport["held"],
  now: number,
): Promise<{ restarted: RestartDecision[]; restartErrors: number }> {
  const restarted: RestartDecision[] = [];
  let restartErrors = 0;
  const max = opts.maxRestartsPerCheck ?? 10;
  for (const d of decisions.slice(max)) {
    held.push({ workload: d.workload, why: `paced: at most ${max} restarts per check` });
    deps.log.info(
      { ...d.workload, changes: d.changes.map(describeChange) },
      "stale, restart paced to the next check",
    );
  }
  for (const d of decisions.slice(0, max)) {
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
  return { restarted, restartErrors };
}

/** Most pods per list request; fewer when pages are large (see PAGE_BYTES). */
export const DEFAULT_PAGE_SIZE = 50;
/** Only running pods can be stale; pending ones (however large) are never even sent. */
export const POD_FIELD_SELECTOR = "status.phase=Running";
/**
 * Largest page body read. A larger one is dropped unread and asked for again with half as many
 * pods, so the memory one page can take is bounded by bytes, not by the count of pods: a pod can
 * be 1.5 MiB (etcd's default request limit), ~1,000 times a typical one. Above the largest pod, so
 * that a page of one always fits.
 */
export const PAGE_BYTES = 4 * 1024 * 1024;
/** After a page this large, collect garbage at once (see collectGarbage). */
const LARGE_PAGE_BYTES = 1024 * 1024;

class PageTooLarge extends Error {}

/**
 * V8 sizes its heap by the machine's memory, not by the container's limit: left alone, it lets the
 * garbage of a few large pages pile up past 192 MiB before collecting (measured: 253 MiB peak for
 * 30 running 1.4 MB pods in pages of 10). A full collection after a large page costs a few
 * milliseconds and keeps the peak at one page's worth.
 */
const collectGarbage: () => void = (() => {
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  } catch {
    return () => {};
  }
})();

/**
 * GET `url` from the API server as plain JSON, refusing a body over `maxBytes` (PageTooLarge). Not
 * through @kubernetes/client-node's typed client: its deserialisation keeps another copy of every
 * page, and the controller reads a few fields of each pod.
 */
async function getJsonBounded(
  kc: KubeConfig,
  url: URL,
  maxBytes: number,
): Promise<{ json: unknown; bytes: number }> {
  const options: https.RequestOptions = { method: "GET", headers: { Accept: "application/json" } };
  await kc.applyToHTTPSOptions(options);
  const request = url.protocol === "http:" ? http.request : https.request;
  const body = await new Promise<Buffer>((resolve, reject) => {
    const req = request(url, { ...options, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          req.destroy(new PageTooLarge(`a page of pods is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => {
        const all = Buffer.concat(chunks);
        if (res.statusCode === 200) return resolve(all);
        let message = "";
        try {
          message = String((JSON.parse(all.toString("utf8")) as { message?: unknown }).message ?? "");
        } catch {}
        const e = new Error(`listing pods: HTTP ${res.statusCode} ${message.slice(0, 300)}`) as Error & {
          code?: number;
        };
        e.code = res.statusCode;
        reject(e);
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("listing pods: no answer within 60 s")));
    req.on("error", reject);
    req.end();
  });
  return { json: JSON.parse(body.toString("utf8")), bytes: body.length };
}

/**
 * The running pods labelled for injection, page by page: at most `maxPods` a page and at most
 * PAGE_BYTES of body (a larger page is asked for again with half the pods, down to one).
 */
function podPages(kc: KubeConfig, namespace: string | undefined, maxPods: number): AsyncGenerator<V1Pod[]> {
  const query = { labelSelector: `${INJECT_LABEL}=true`, fieldSelector: POD_FIELD_SELECTOR };
  return listPages<V1Pod>(kc, "/api/v1", "pods", namespace, query, maxPods);
}

/**
 * Objects of `resource` under `group` (e.g. "/apis/apps/v1"), in one namespace or all, page by
 * page, each page bounded in count and bytes as podPages says.
 */
async function* listPages<T>(
  kc: KubeConfig,
  group: string,
  resource: string,
  namespace: string | undefined,
  params: Record<string, string>,
  maxItems: number,
): AsyncGenerator<T[]> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error("the kubeconfig names no cluster server");
  const path = namespace
    ? `${group}/namespaces/${encodeURIComponent(namespace)}/${resource}`
    : `${group}/${resource}`;
  let limit = maxItems;
  let cont: string | undefined;
  for (;;) {
    const query = new URLSearchParams({ ...params, limit: String(limit) });
    if (cont) query.set("continue", cont);
    let page: { json: unknown; bytes: number };
    try {
      page = await getJsonBounded(kc, new URL(`${path}?${query}`, server), PAGE_BYTES);
    } catch (e) {
      if (!(e instanceof PageTooLarge) || limit === 1) throw e;
      collectGarbage();
      limit = Math.max(1, Math.floor(limit / 2));
      continue; // the same page again, with fewer items
    }
    const list = page.json as { metadata?: { continue?: string }; items?: T[] };
    cont = list.metadata?.continue || undefined;
    yield list.items ?? [];
    if (page.bytes > LARGE_PAGE_BYTES) collectGarbage();
    else limit = Math.min(maxItems, limit * 2);
    if (!cont) return;
  }
}

/** A workload as listed: what a review needs of it. */
export interface ListedWorkload {
  kind: Workload["kind"];
  namespace: string;
  name: string;
  uid: string;
  selector: V1LabelSelector | undefined;
  template: V1PodTemplateSpec | undefined;
}

const WORKLOAD_RESOURCES = [
  { kind: "Deployment", group: "/apis/apps/v1", resource: "deployments" },
  { kind: "StatefulSet", group: "/apis/apps/v1", resource: "statefulsets" },
  { kind: "DaemonSet", group: "/apis/apps/v1", resource: "daemonsets" },
  { kind: "CronJob", group: "/apis/batch/v1", resource: "cronjobs" },
] as const;

type AnyWorkload = {
  metadata?: { namespace?: string; name?: string; uid?: string };
  spec?: {
    selector?: V1LabelSelector;
    template?: V1PodTemplateSpec;
    jobTemplate?: { spec?: { template?: V1PodTemplateSpec } };
  };
};

/** The pod template of a Deployment, StatefulSet, DaemonSet, or a CronJob's job template. */
function workloadTemplate(o: AnyWorkload): V1PodTemplateSpec | undefined {
  return o.spec?.template ?? o.spec?.jobTemplate?.spec?.template;
}

/** The component named in the Events this controller records. */
const EVENT_SOURCE = "sm-injector-rotation";

async function warnWorkload(
  core: import("@kubernetes/client-node").CoreV1Api,
  w: Pick<Workload, "kind" | "namespace" | "name">,
  { reason, message, key }: { reason: string; message: string; key: string },
): Promise<void> {
  // Named after the workload and what the warning is about: the same warning is the same Event,
  // counted up (its message updated), however its wording changes.
  const digest = createHash("sha256").update(`${w.kind}\n${reason}\n${key}`).digest("hex").slice(0, 16);
  const name = `${w.name.slice(0, 200)}.${digest}`;
  const now = new Date();
  const apiVersion = w.kind === "CronJob" ? "batch/v1" : "apps/v1";
  const k8s = await import("@kubernetes/client-node");
  try {
    await core.createNamespacedEvent({
      namespace: w.namespace,
      body: {
        metadata: { name, namespace: w.namespace },
        involvedObject: { apiVersion, kind: w.kind, name: w.name, namespace: w.namespace },
        reason,
        message: message.slice(0, 1024),
        type: "Warning",
        source: { component: EVENT_SOURCE },
        reportingComponent: EVENT_SOURCE,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
  } catch (e) {
    if ((e as { code?: number }).code !== 409) throw e;
    const seen = await core.readNamespacedEvent({ namespace: w.namespace, name });
    await core.patchNamespacedEvent(
      {
        namespace: w.namespace,
        name,
        body: { count: (seen.count ?? 1) + 1, lastTimestamp: now, message: message.slice(0, 1024) },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
  }
}

/** What `sm-injector report` (and the controller's metrics) read besides what a rotation check does. */
export interface ReviewReads {
  /** Every Deployment, StatefulSet, DaemonSet and CronJob (in one namespace, or all), page by page. */
  workloadPages(): AsyncIterable<ListedWorkload[]>;
  describeSecret(region: string, secretId: string): Promise<SecretDescription>;
  /** A Namespace's annotations ({} when it does not exist). */
  namespaceAnnotations(name: string): Promise<Record<string, string>>;
  /**
   * A Warning Event on the workload (`kubectl describe` shows it to its team); the same warning
   * again counts up the same Event instead of adding one.
   */
  warnWorkload(
    w: Pick<Workload, "kind" | "namespace" | "name">,
    warning: { reason: string; message: string; key: string },
  ): Promise<void>;
}

type K8s = typeof import("@kubernetes/client-node");
type AppsApi = import("@kubernetes/client-node").AppsV1Api;
type BatchApi = import("@kubernetes/client-node").BatchV1Api;

/** A read that answers undefined for a 404 (the object is gone: a fact, not an error). */
async function orUndefined<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

function controllerOf(m: { ownerReferences?: V1OwnerReference[] } | undefined): OwnerRef | undefined {
  const o = m?.ownerReferences?.find((r) => r.controller);
  return o && { apiVersion: o.apiVersion, kind: o.kind, name: o.name, uid: o.uid };
}

/** DescribeSecret through one SDK client per region (never GetSecretValue). */
function secretDescriptions() {
  const clients = new Map<string, SecretsManagerClient>();
  const client = (region: string) => {
    let c = clients.get(region);
    if (!c) {
      c = new SecretsManagerClient(region ? { region } : {});
      clients.set(region, c);
    }
    return c;
  };
  const describe = async (region: string, secretId: string): Promise<SecretDescription> => {
    const out = await client(region).send(new DescribeSecretCommand({ SecretId: secretId }));
    return {
      versionStages: out.VersionIdsToStages ?? {},
      rotationEnabled: out.RotationEnabled === true,
      lastRotatedDate: out.LastRotatedDate,
      lastChangedDate: out.LastChangedDate,
      nextRotationDate: out.NextRotationDate,
      createdDate: out.CreatedDate,
    };
  };
  const close = () => {
    for (const c of clients.values()) c.destroy();
  };
  return { describe, close };
}

/** Every workload kind the review reads, page by page, in the shape the planner takes. */
async function* listedWorkloadPages(
  kc: KubeConfig,
  namespace: string | undefined,
  pageSize: number,
): AsyncGenerator<ListedWorkload[]> {
  for (const r of WORKLOAD_RESOURCES)
    for await (const page of listPages<AnyWorkload>(kc, r.group, r.resource, namespace, {}, pageSize))
      yield page.map((o) => ({
        kind: r.kind,
        namespace: o.metadata?.namespace ?? "",
        name: o.metadata?.name ?? "",
        uid: o.metadata?.uid ?? "",
        selector: o.spec?.selector,
        template: workloadTemplate(o),
      }));
}

/** The objects a pod's claim is verified through: its Job, ReplicaSet, ControllerRevision, workload. */
function ownerReads(apps: AppsApi, batch: BatchApi) {
  const readers = {
    Deployment: (namespace: string, name: string) => apps.readNamespacedDeployment({ namespace, name }),
    StatefulSet: (namespace: string, name: string) => apps.readNamespacedStatefulSet({ namespace, name }),
    DaemonSet: (namespace: string, name: string) => apps.readNamespacedDaemonSet({ namespace, name }),
    CronJob: (namespace: string, name: string) => batch.readNamespacedCronJob({ namespace, name }),
  };
  return {
    job: (namespace: string, name: string) =>
      orUndefined(async () => {
        const job = await batch.readNamespacedJob({ namespace, name });
        return {
          uid: job.metadata?.uid ?? "",
          controller: controllerOf(job.metadata),
          labels: job.metadata?.labels ?? {},
          template: job.spec?.template,
          selector: job.spec?.selector,
        };
      }),
    replicaSet: (namespace: string, name: string) =>
      orUndefined(async () => {
        const rs = await apps.readNamespacedReplicaSet({ namespace, name });
        return {
          uid: rs.metadata?.uid ?? "",
          controller: controllerOf(rs.metadata),
          labels: rs.spec?.template?.metadata?.labels ?? {},
          template: rs.spec?.template,
        };
      }),
    controllerRevision: (namespace: string, name: string) =>
      orUndefined(async () => {
        const cr = await apps.readNamespacedControllerRevision({ namespace, name });
        return {
          uid: cr.metadata?.uid ?? "",
          controller: controllerOf(cr.metadata),
          labels: cr.metadata?.labels ?? {},
          template: controllerRevisionTemplate(cr.data),
        };
      }),
    workload: (kind: keyof typeof readers, namespace: string, name: string) =>
      orUndefined(async () => {
        const obj = (await readers[kind](namespace, name)) as AnyWorkload;
        return {
          uid: obj.metadata?.uid ?? "",
          selector: obj.spec?.selector,
          template: workloadTemplate(obj),
        };
      }),
  };
}

/** `kubectl rollout restart` by hand: the workload's pod template gets the annotations. */
async function stampTemplate(
  k8s: K8s,
  apps: AppsApi,
  w: Pick<Workload, "kind" | "namespace" | "name" | "uid">,
  annotations: Record<string, string>,
): Promise<void> {
  // metadata.uid makes the patch conditional: it fails if the object was replaced meanwhile.
  const body = { metadata: { uid: w.uid }, spec: { template: { metadata: { annotations } } } };
  const options = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
  const args = { namespace: w.namespace, name: w.name, body, fieldManager: "sm-injector-rotation" };
  if (w.kind === "Deployment") await apps.patchNamespacedDeployment(args, options);
  else if (w.kind === "StatefulSet") await apps.patchNamespacedStatefulSet(args, options);
  else if (w.kind === "DaemonSet") await apps.patchNamespacedDaemonSet(args, options);
  else throw new Error(`a ${w.kind} is never restarted`);
}

/** The kubeconfig, or an error that names the file (the library's own is a TypeError on an empty file). */
function loadKubeConfig(k8s: K8s, file: string | undefined): KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    if (file) kc.loadFromFile(file);
    else kc.loadFromDefault();
    if (!kc.getCurrentCluster()) throw new Error("it names no current cluster");
  } catch (e) {
    const where = file ?? "the default kubeconfig (in-cluster, KUBECONFIG, ~/.kube/config)";
    const why = e instanceof TypeError ? "it is not a kubeconfig" : (e as Error).message.split("\n")[0];
    throw new Error(`cannot use ${where}: ${why} (check --kubeconfig)`);
  }
  return kc;
}

/** Real dependencies: @kubernetes/client-node and the AWS SDK. */
export async function realDeps(opts: {
  kubeconfig?: string;
  namespace?: string;
  pageSize?: number;
  log: Logger;
}): Promise<RotationDeps & ReviewReads & { close(): void }> {
  const k8s = await import("@kubernetes/client-node");
  const kc = loadKubeConfig(k8s, opts.kubeconfig);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
  const secrets = secretDescriptions();
  return {
    log: opts.log,
    podPages: () => podPages(kc, opts.namespace, pageSize),
    workloadPages: () => listedWorkloadPages(kc, opts.namespace, pageSize),
    ...ownerReads(apps, batch),
    describeSecret: secrets.describe,
    warnWorkload: (w, warning) => warnWorkload(core, w, warning),
    async namespaceAnnotations(name) {
      const ns = await orUndefined(() => core.readNamespace({ name }));
      return ns?.metadata?.annotations ?? {};
    },
    stampTemplate: (w, annotations) => stampTemplate(k8s, apps, w, annotations),
    versionStages: async (region, secretId) => (await secrets.describe(region, secretId)).versionStages,
    close: secrets.close,
  };
}
