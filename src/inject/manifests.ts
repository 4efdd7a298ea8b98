// `sm-injector inject`: the webhook's exact mutation applied offline to every opted-in pod
// template of a multi-document manifest. Pure: text in, text out.
import type { V1Pod } from "@kubernetes/client-node";
import { createTwoFilesPatch } from "diff";
import { isMap, parseAllDocuments, stringify } from "yaml";
import { serviceAccountIdentity } from "../mutate/identity.ts";
import { isInjected, mutatePod } from "../mutate/pod.ts";
import { INJECT_LABEL } from "../spec/annotations.ts";
import { compileInjectionSpec } from "../spec/compile.ts";
import type { InjectorConfig } from "../spec/config.ts";

type Obj = Record<string, unknown>;

export interface InjectResult {
  ok: boolean;
  output: string;
  /** One line per problem, naming the document. */
  errors: string[];
  warnings: string[];
  injected: number;
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

/** Mutates one object (Pod, workload or List) in place; returns the number of pods injected. */
function injectObject(
  doc: Obj,
  where: string,
  config: InjectorConfig,
  roles: Map<string, Record<string, string>>,
  errors: string[],
  warnings: string[],
): number {
  const kind = doc.kind;
  if (kind === "List" && Array.isArray(doc.items)) {
    let n = 0;
    doc.items.forEach((item, i) => {
      if (isObj(item)) n += injectObject(item, `${where} item ${i + 1}`, config, roles, errors, warnings);
    });
    return n;
  }
  let podLike: Obj | undefined;
  if (kind === "Pod") podLike = doc;
  else if (typeof kind === "string" && TEMPLATE_PATHS[kind]) {
    const t = get(doc, TEMPLATE_PATHS[kind] as string[]);
    if (isObj(t)) podLike = t;
  }
  if (!podLike) return 0;
  const namespace = (get(doc, ["metadata", "namespace"]) as string | undefined) ?? "default";
  const pod = podLike as V1Pod;
  if (pod.metadata?.labels?.[INJECT_LABEL] !== "true") return 0;
  if (!isObj(pod.spec) || !Array.isArray(pod.spec.containers)) {
    errors.push(`${where}: the pod template has no spec.containers`);
    return 0;
  }
  if (isInjected(pod)) {
    warnings.push(`${where}: already injected; left as is`);
    return 0;
  }
  const compiled = compileInjectionSpec(pod, config);
  warnings.push(...compiled.warnings.map((w) => `${where}: ${w}`));
  if (!compiled.ok) {
    errors.push(...compiled.errors.map((e) => `${where}: ${e}`));
    return 0;
  }
  const saName = pod.spec.serviceAccountName ?? "default";
  const sa = roles.get(`${namespace}/${saName}`);
  const result = mutatePod(pod, compiled.spec, config, sa ? serviceAccountIdentity(sa) : undefined);
  warnings.push(...result.warnings.map((w) => `${where}: ${w}`));
  for (const k of Object.keys(podLike)) delete podLike[k];
  Object.assign(podLike, result.pod);
  return 1;
}

export function injectManifests(
  text: string,
  config: InjectorConfig,
  opts: { diff?: boolean; fileName?: string } = {},
): InjectResult {
  const docs = parseAllDocuments(text);
  const errors: string[] = [];
  const warnings: string[] = [];
  if (!Array.isArray(docs))
    return { ok: false, output: "", errors: ["the input is empty"], warnings, injected: 0 };

  const parsed = docs.map((d, i) => {
    if (d.errors.length > 0)
      errors.push(`document ${i + 1}: invalid YAML: ${d.errors[0]?.message.split("\n")[0]}`);
    return d.toJS({ maxAliasCount: 100 }) as unknown;
  });
  if (errors.length > 0) return { ok: false, output: "", errors, warnings, injected: 0 };

  // ServiceAccounts in the same input stand in for the API look-up the webhook would do.
  const roles = new Map<string, Record<string, string>>();
  for (const d of parsed) {
    if (isObj(d) && d.kind === "ServiceAccount" && isObj(d.metadata)) {
      const ns = (d.metadata.namespace as string | undefined) ?? "default";
      roles.set(`${ns}/${String(d.metadata.name)}`, (d.metadata.annotations as Record<string, string>) ?? {});
    }
  }

  let injected = 0;
  const out: string[] = [];
  const before: string[] = [];
  parsed.forEach((d, i) => {
    const original = String(docs[i]?.toString() ?? "");
    before.push(original);
    if (!isObj(d)) {
      out.push(original);
      return;
    }
    const n = injectObject(d, describe(d, i), config, roles, errors, warnings);
    injected += n;
    out.push(n > 0 ? stringify(d, { lineWidth: 0 }) : original);
  });
  if (errors.length > 0) return { ok: false, output: "", errors, warnings, injected: 0 };

  const joined = (parts: string[]) =>
    parts.map((p) => p.replace(/^---\n/, "").replace(/\n*$/, "\n")).join("---\n");
  const output = opts.diff
    ? createTwoFilesPatch(
        opts.fileName ?? "input",
        `${opts.fileName ?? "input"} (injected)`,
        joined(before),
        joined(out),
        undefined,
        undefined,
        { context: 3 },
      )
    : joined(out);
  return { ok: true, output, errors, warnings, injected };
}

/** True when a parsed document is a map (used by callers validating input). */
export function isYamlMap(v: unknown): boolean {
  return isMap(v);
}
