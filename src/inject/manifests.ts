// `sm-injector inject`: the webhook's decision (admission/decide.ts, the same function) applied
// offline to every opted-in pod template of a multi-document manifest, with the ServiceAccounts and
// Namespaces of the input standing in for the API server's. Pure: text in, text out.
import { createTwoFilesPatch } from "diff";
import { parseAllDocuments, stringify } from "yaml";
import { type DecisionContext, decideInjection, type InjectionDecision } from "../admission/decide.ts";
import type { DenialCode } from "../admission/denials.ts";
import type { InjectorConfig } from "../contract/config.ts";
import { namespacePolicy } from "../contract/policy.ts";
import { serviceAccountIdentity } from "../mutate/identity.ts";
import { editDocument } from "./yaml-edit.ts";

type Obj = Record<string, unknown>;

export interface InjectResult {
  ok: boolean;
  output: string;
  /** One entry per refused pod template (or unreadable document), naming the document; a refusal carries the webhook's message. */
  errors: string[];
  warnings: string[];
  injected: number;
  /** Every opted-in pod template, with the decision's verdict. */
  pods: PodOutcome[];
}

/** Where each workload kind keeps its pod template. */
const TEMPLATE_PATHS: Record<string, string[]> = {
  Deployment: ["spec", "template"],
  StatefulSet: ["spec", "template"],
  DaemonSet: ["spec", "template"],
  ReplicaSet: ["spec", "template"],
  ReplicationController: ["spec", "template"],
  Job: ["spec", "template"],
  CronJob: ["spec", "jobTemplate", "spec", "template"],
};

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function get(o: unknown, path: string[]): unknown {
  let cur = o;
  for (const p of path) cur = isObj(cur) ? cur[p] : undefined;
  return cur;
}

function describe(doc: Obj, index: number): string {
  const meta = isObj(doc.metadata) ? doc.metadata : {};
  return `document ${index + 1} (${String(doc.kind ?? "?")} ${String(meta.name ?? meta.generateName ?? "unnamed")})`;
}

/** The facts the webhook reads from the API server, read from the input's own documents instead. */
interface InputFacts {
  /** `namespace/name` → the ServiceAccount's annotations. */
  serviceAccounts: Map<string, Record<string, string>>;
  /** Namespace name → its annotations. */
  namespaces: Map<string, Record<string, string>>;
}

/** The string-valued annotations (the API server would refuse any other). */
function annotationsOf(meta: Obj): Record<string, string> {
  if (!isObj(meta.annotations)) return {};
  return Object.fromEntries(
    Object.entries(meta.annotations).filter(([, v]) => typeof v === "string"),
  ) as Record<string, string>;
}

function readFacts(docs: unknown[]): InputFacts {
  const facts: InputFacts = { serviceAccounts: new Map(), namespaces: new Map() };
  const visit = (d: unknown) => {
    if (!isObj(d) || !isObj(d.metadata)) {
      if (isObj(d) && d.kind === "List" && Array.isArray(d.items)) d.items.forEach(visit);
      return;
    }
    const meta = d.metadata;
    if (d.kind === "ServiceAccount") {
      const ns = typeof meta.namespace === "string" ? meta.namespace : "default";
      facts.serviceAccounts.set(`${ns}/${String(meta.name)}`, annotationsOf(meta));
    } else if (d.kind === "Namespace") {
      facts.namespaces.set(String(meta.name), annotationsOf(meta));
    } else if (d.kind === "List" && Array.isArray(d.items)) d.items.forEach(visit);
  };
  docs.forEach(visit);
  return facts;
}

/** What the webhook's look-ups would answer, from the input: a ServiceAccount or Namespace absent from it has no IRSA role and no policy. */
function decisionContext(config: InjectorConfig, facts: InputFacts): DecisionContext {
  return {
    config,
    serviceAccount: (namespace, name) => {
      const annotations = facts.serviceAccounts.get(`${namespace}/${name}`);
      return annotations ? serviceAccountIdentity(annotations) : undefined;
    },
    namespacePolicy: (namespace) => namespacePolicy(facts.namespaces.get(namespace)),
  };
}

/** One opted-in pod template and what the decision made of it. */
export interface PodOutcome {
  where: string;
  result: InjectionDecision["verdict"];
  reason: string;
  /** Set when the pod is refused: the code the webhook's audit line and metric would carry. */
  denial?: DenialCode;
}

interface Collected {
  errors: string[];
  warnings: string[];
  pods: PodOutcome[];
}

/** The pod template of a Pod or workload document, if it has one. */
function podTemplateOf(doc: Obj): Obj | undefined {
  if (doc.kind === "Pod") return doc;
  const path = typeof doc.kind === "string" ? TEMPLATE_PATHS[doc.kind] : undefined;
  const t = path ? get(doc, path) : undefined;
  return isObj(t) ? t : undefined;
}

/** Calls `visit` on the pod template of a Pod or workload, or of each item of a List. */
async function forEachPodTemplate(
  doc: Obj,
  where: string,
  visit: (podLike: Obj, namespace: string, where: string) => Promise<void>,
): Promise<void> {
  if (doc.kind === "List" && Array.isArray(doc.items)) {
    for (const [i, item] of doc.items.entries())
      if (isObj(item)) await forEachPodTemplate(item, `${where} item ${i + 1}`, visit);
    return;
  }
  const podLike = podTemplateOf(doc);
  if (!podLike) return;
  const ns = get(doc, ["metadata", "namespace"]);
  await visit(podLike, typeof ns === "string" ? ns : "default", where);
}

/** Decides one object (Pod, workload or List) and replaces its pod template in place; returns the number of pods injected. */
async function injectObject(doc: Obj, where: string, ctx: DecisionContext, out: Collected): Promise<number> {
  let n = 0;
  await forEachPodTemplate(doc, where, async (podLike, namespace, at) => {
    const decision = await decideInjection(podLike, namespace, ctx);
    if (decision.verdict === "skipped") return;
    out.pods.push(
      "denial" in decision
        ? { where: at, result: decision.verdict, reason: decision.reason, denial: decision.denial }
        : { where: at, result: decision.verdict, reason: decision.reason },
    );
    out.warnings.push(...decision.warnings.map((w) => `${at}: ${w}`));
    if (!("pod" in decision)) {
      out.errors.push(`${at}: ${decision.message}`);
      return;
    }
    if (decision.verdict === "unchanged") return;
    for (const k of Object.keys(podLike)) delete podLike[k];
    Object.assign(podLike, decision.pod);
    n++;
  });
  return n;
}

/** The documents of a YAML stream as plain values, or why it cannot be read. */
function parseManifests(
  text: string,
):
  | { ok: true; docs: ReturnType<typeof parseAllDocuments>; parsed: unknown[] }
  | { ok: false; errors: string[] } {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return { ok: false, errors: ["the input is empty"] };
  const errors: string[] = [];
  const parsed = docs.map((d, i) => {
    if (d.errors.length > 0)
      errors.push(`document ${i + 1}: invalid YAML: ${d.errors[0]?.message.split("\n")[0]}`);
    return d.toJS({ maxAliasCount: 100 }) as unknown;
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, docs, parsed };
}

/** One opted-in pod template of the input, where it is, and the webhook's decision on it. */
export interface DecidedPod {
  where: string;
  namespace: string;
  decision: Exclude<InjectionDecision, { verdict: "skipped" }>;
}

/**
 * The webhook's decision on every opted-in pod template of a manifest stream (Pods, workloads,
 * Lists), with the input's ServiceAccounts and Namespaces standing in for the API server's, as
 * `inject` reads them. For commands that need what the pods will fetch, not the mutated YAML.
 */
export async function decideManifestPods(
  text: string,
  config: InjectorConfig,
): Promise<{ ok: true; pods: DecidedPod[] } | { ok: false; errors: string[] }> {
  const read = parseManifests(text);
  if (!read.ok) return read;
  const ctx = decisionContext(config, readFacts(read.parsed));
  const pods: DecidedPod[] = [];
  for (const [i, d] of read.parsed.entries()) {
    if (!isObj(d)) continue;
    await forEachPodTemplate(d, describe(d, i), async (podLike, namespace, where) => {
      const decision = await decideInjection(podLike, namespace, ctx);
      if (decision.verdict !== "skipped") pods.push({ where, namespace, decision });
    });
  }
  return { ok: true, pods };
}

export async function injectManifests(
  text: string,
  config: InjectorConfig,
  opts: { diff?: boolean; fileName?: string } = {},
): Promise<InjectResult> {
  const read = parseManifests(text);
  if (!read.ok) return { ok: false, output: "", warnings: [], injected: 0, pods: [], errors: read.errors };
  const { docs, parsed } = read;
  const errors: string[] = [];

  const ctx = decisionContext(config, readFacts(parsed));
  const collected: Collected = { errors, warnings: [], pods: [] };
  let injected = 0;
  const out: string[] = [];
  const before: string[] = [];
  const edited: string[] = [];
  for (const [i, d] of parsed.entries()) {
    const original = String(docs[i]?.toString() ?? "");
    const n = isObj(d) ? await injectObject(d, describe(d, i), ctx, collected) : 0;
    injected += n;
    out.push(n > 0 ? stringify(d, { lineWidth: 0 }) : original);
    if (opts.diff) {
      // Like with like: the document against itself edited, so only what injection changes differs.
      const doc = docs[i] as (typeof docs)[number];
      before.push(doc.toString({ lineWidth: 0 }));
      if (n > 0) editDocument(doc, d);
      edited.push(doc.toString({ lineWidth: 0 }));
    }
  }
  const { warnings, pods } = collected;
  if (errors.length > 0) return { ok: false, output: "", errors, warnings, injected: 0, pods };

  const joined = (parts: string[]) =>
    parts.map((p) => p.replace(/^---\n/, "").replace(/\n*$/, "\n")).join("---\n");
  const output = opts.diff
    ? createTwoFilesPatch(
        opts.fileName ?? "input",
        `${opts.fileName ?? "input"} (injected)`,
        joined(before),
        joined(edited),
        undefined,
        undefined,
        { context: 3 },
      )
    : joined(out);
  return { ok: true, output, errors, warnings, injected, pods };
}
