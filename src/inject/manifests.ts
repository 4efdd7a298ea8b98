// `sm-injector inject`: the webhook's decision (admission/decide.ts, the same function) applied
// offline to every opted-in pod template of a multi-document manifest, with the ServiceAccounts and
// Namespaces of the input standing in for the API server's. Pure: text in, text out.
import { createTwoFilesPatch } from "diff";
import { parseAllDocuments, stringify } from "yaml";
import { type DecisionContext, decideInjection, type InjectionDecision } from "../admission/decide.ts";
import type { DenialCode } from "../admission/denials.ts";
import { serviceAccountIdentity } from "../mutate/identity.ts";
import type { InjectorConfig } from "../spec/config.ts";
import { namespacePolicy } from "../spec/policy.ts";
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

/** Decides one object (Pod, workload or List) and replaces its pod template in place; returns the number of pods injected. */
async function injectObject(doc: Obj, where: string, ctx: DecisionContext, out: Collected): Promise<number> {
  if (doc.kind === "List" && Array.isArray(doc.items)) {
    let n = 0;
    for (const [i, item] of doc.items.entries())
      if (isObj(item)) n += await injectObject(item, `${where} item ${i + 1}`, ctx, out);
    return n;
  }
  const podLike = podTemplateOf(doc);
  if (!podLike) return 0;
  const ns = get(doc, ["metadata", "namespace"]);
  const decision = await decideInjection(podLike, typeof ns === "string" ? ns : "default", ctx);
  if (decision.verdict === "skipped") return 0;
  out.pods.push(
    "denial" in decision
      ? { where, result: decision.verdict, reason: decision.reason, denial: decision.denial }
      : { where, result: decision.verdict, reason: decision.reason },
  );
  out.warnings.push(...decision.warnings.map((w) => `${where}: ${w}`));
  if (!("pod" in decision)) {
    out.errors.push(`${where}: ${decision.message}`);
    return 0;
  }
  if (decision.verdict === "unchanged") return 0;
  for (const k of Object.keys(podLike)) delete podLike[k];
  Object.assign(podLike, decision.pod);
  return 1;
}

export async function injectManifests(
  text: string,
  config: InjectorConfig,
  opts: { diff?: boolean; fileName?: string } = {},
): Promise<InjectResult> {
  const docs = parseAllDocuments(text);
  const errors: string[] = [];
  const none = { ok: false, output: "", warnings: [], injected: 0, pods: [] };
  if (!Array.isArray(docs)) return { ...none, errors: ["the input is empty"] };

  const parsed = docs.map((d, i) => {
    if (d.errors.length > 0)
      errors.push(`document ${i + 1}: invalid YAML: ${d.errors[0]?.message.split("\n")[0]}`);
    return d.toJS({ maxAliasCount: 100 }) as unknown;
  });
  if (errors.length > 0) return { ...none, errors };

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
