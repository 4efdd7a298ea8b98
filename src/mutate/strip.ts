// The inverse of mutatePod: a pod that arrives carrying sm-injector's additions (its init container,
// volumes, mounts, path variable, command wrapper, status annotation) is taken back to the pod its
// author wrote, so that admission decides on that pod's annotations alone and derives the injection
// afresh. Whatever the incoming additions claim (a hand-made SM_INJECTOR_SPEC, "status: injected")
// is dropped, never read. Pure.
//
// Exact for every pod mutatePod can produce (a property test holds strip(mutate(p, s), s) to p), with
// one ambiguity that mutatePod itself creates: a targeted container that already set the path
// variable, once, to the very path sm-injector would add looks like one it was given. Dropping it is
// harmless: re-deriving adds the same entry back.
import type { V1Container, V1EnvVar, V1Pod, V1VolumeMount } from "@kubernetes/client-node";
import {
  AWS_TOKEN_VOLUME_NAME,
  ENV_FILE_VAR,
  INIT_CONTAINER_NAME,
  SECRETS_DIR_VAR,
  STATUS_ANNOTATION,
  VOLUME_NAME,
} from "../contract/annotations.ts";
import type { InjectionSpec } from "../contract/compile.ts";
import { outputPath } from "../contract/paths.ts";
import { withFields } from "./clone.ts";
import { WRAP_SHELL, wrapperScript } from "./pod.ts";

const OUR_VOLUMES: ReadonlySet<string> = new Set([VOLUME_NAME, AWS_TOKEN_VOLUME_NAME]);
const PATH_VARIABLES: ReadonlySet<string> = new Set([ENV_FILE_VAR, SECRETS_DIR_VAR]);

/** What the targeted containers were given, per the spec their pod's annotations compile to. */
export type ContainerAdditions = Pick<
  InjectionSpec,
  "targets" | "wrap" | "format" | "outputDir" | "fileName"
>;

/**
 * The pod without anything mutatePod(pod, spec) adds; `spec` is what the pod's annotations compile
 * to (compile them on stripObjects(pod), which they do not depend on). The original is not modified.
 */
export function stripInjection(pod: V1Pod, spec: ContainerAdditions): V1Pod {
  const bare = stripObjects(pod);
  const containers = bare.spec?.containers;
  if (!Array.isArray(containers)) return bare;
  const path = outputPath(spec);
  const pathVar = spec.format === "files" ? SECRETS_DIR_VAR : ENV_FILE_VAR;
  const strip = (c: V1Container): V1Container =>
    spec.targets.includes(c?.name) ? stripContainer(c, pathVar, path, spec.wrap.includes(c.name)) : c;
  const inits = bare.spec?.initContainers;
  return withFields(bare, {
    spec: withFields(bare.spec as NonNullable<V1Pod["spec"]>, {
      containers: containers.map(strip),
      ...(Array.isArray(inits) && { initContainers: inits.map(strip) }),
    }),
  });
}

/**
 * The part of stripInjection that needs no spec: the init container, sm-injector's volumes and every
 * mount of them, the status annotation. Lists left empty are dropped, as the API server serialises
 * them (omitempty), so the result compares equal to the pod that was written.
 */
export function stripObjects(pod: V1Pod): V1Pod {
  const spec = pod.spec;
  const metadata = pod.metadata;
  let out = pod;
  if (isObject(metadata?.annotations) && Object.hasOwn(metadata.annotations, STATUS_ANNOTATION)) {
    const annotations = withoutKey(metadata.annotations, STATUS_ANNOTATION);
    out = withFields(out, { metadata: withOptional(metadata, "annotations", annotations) });
  }
  if (!spec) return out;
  let newSpec = spec;
  if (Array.isArray(spec.initContainers)) {
    const inits = spec.initContainers
      .filter((c) => c?.name !== INIT_CONTAINER_NAME)
      .map((c) => withoutOurMounts(c));
    newSpec = withOptional(newSpec, "initContainers", inits);
  }
  if (Array.isArray(spec.containers)) {
    newSpec = withFields(newSpec, { containers: spec.containers.map((c) => withoutOurMounts(c)) });
  }
  if (Array.isArray(spec.volumes)) {
    newSpec = withOptional(
      newSpec,
      "volumes",
      spec.volumes.filter((v) => !OUR_VOLUMES.has(v?.name)),
    );
  }
  return newSpec === spec ? out : withFields(out, { spec: newSpec });
}

/** A targeted container: the path variable mutatePod adds when the container has none, and the wrapper. */
function stripContainer(c: V1Container, pathVar: string, path: string, wrapped: boolean): V1Container {
  let out = c;
  const env = Array.isArray(c.env) ? c.env : [];
  const named = env.filter((e) => e?.name === pathVar);
  if (named.length === 1 && isAddedPathVariable(named[0] as V1EnvVar, pathVar, path)) {
    out = withOptional(
      out,
      "env",
      env.filter((e) => e !== named[0]),
    );
  }
  const script = wrapperScript(path);
  const command = c.command;
  if (
    wrapped &&
    Array.isArray(command) &&
    command.length > WRAP_SHELL.length + 1 &&
    WRAP_SHELL.every((part, i) => command[i] === part) &&
    command[WRAP_SHELL.length] === script
  ) {
    out = withFields(out, { command: command.slice(WRAP_SHELL.length + 1) });
  }
  return out;
}

/** Exactly the entry mutatePod adds: `{ name, value }` and nothing else. */
function isAddedPathVariable(e: V1EnvVar, pathVar: string, path: string): boolean {
  const keys = Object.keys(e);
  return e.name === pathVar && e.value === path && keys.length === 2;
}

function withoutOurMounts<T extends V1Container>(c: T): T {
  if (!Array.isArray(c?.volumeMounts) || !c.volumeMounts.some((m) => OUR_VOLUMES.has(m?.name))) return c;
  return withOptional(
    c,
    "volumeMounts",
    c.volumeMounts.filter((m) => !OUR_VOLUMES.has(m?.name)),
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function withoutKey<T extends Record<string, unknown>>(obj: T, key: string): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj)) {
    if (k === key) continue;
    Object.defineProperty(out, k, { value: obj[k], enumerable: true, writable: true, configurable: true });
  }
  return out as T;
}

/** obj with field set to a list or map, or without the field when that is empty (omitempty). */
function withOptional<T extends object, K extends keyof T>(obj: T, field: K, value: T[K]): T {
  const empty = Array.isArray(value)
    ? value.length === 0
    : typeof value === "object" && value !== null && Object.keys(value).length === 0;
  if (!empty) return withFields(obj, { [field]: value } as unknown as Partial<T>);
  return withoutKey(obj as Record<string, unknown>, field as string) as T;
}

/**
 * `derived` (mutatePod's result for the stripped pod) with sm-injector's entries put back where
 * `incoming` had them: its volumes, and each container's mount and path variable. mutatePod appends
 * them, so a pod another webhook changed after our first pass (appending its own volume, mounts and
 * variables) would otherwise come back reordered, and its patch show moves that change nothing.
 * Where a list differs in more than the order of sm-injector's entries, the derived list stands.
 */
export function keepIncomingOrder(incoming: V1Pod, derived: V1Pod): V1Pod {
  const inSpec = incoming.spec;
  const outSpec = derived.spec;
  if (!inSpec || !outSpec) return derived;
  const volumes = alignList(inSpec.volumes, outSpec.volumes, (v) => OUR_VOLUMES.has(v?.name));
  const containers = outSpec.containers.map((c, i) => inIncomingOrder(inSpec.containers?.[i], c));
  // Init containers by name: ours is among them (and may have moved), the others keep their order.
  const initContainers = outSpec.initContainers?.map((c) =>
    c.name === INIT_CONTAINER_NAME
      ? c
      : inIncomingOrder(
          inSpec.initContainers?.find((x) => x?.name === c.name),
          c,
        ),
  );
  return withFields(derived, {
    spec: withFields(outSpec, {
      ...(volumes && { volumes }),
      containers,
      ...(initContainers && { initContainers }),
    }),
  });
}

/** A derived container's mounts and path variable where the incoming container (same name) had them. */
function inIncomingOrder(before: V1Container | undefined, c: V1Container): V1Container {
  if (!before || before.name !== c.name) return c;
  const volumeMounts = alignList(before.volumeMounts, c.volumeMounts, (m) => OUR_VOLUMES.has(m?.name));
  const env = alignList(before.env, c.env, (e) => PATH_VARIABLES.has(e?.name));
  return volumeMounts === c.volumeMounts && env === c.env
    ? c
    : withFields(c, { ...(volumeMounts && { volumeMounts }), ...(env && { env }) });
}

/**
 * `derived` in `incoming`'s order when both hold the same other entries in the same order. An entry
 * is sm-injector's when isOurs says so and its name is unique in both lists (else it is left where
 * it is, among the others).
 */
function alignList<T extends { name: string }>(
  incoming: T[] | undefined,
  derived: T[] | undefined,
  isOurs: (e: T) => boolean,
): T[] | undefined {
  if (!Array.isArray(incoming) || !Array.isArray(derived)) return derived;
  const counts = (list: T[]) => {
    const n = new Map<string, number>();
    for (const e of list) if (isOurs(e)) n.set(e.name, (n.get(e.name) ?? 0) + 1);
    return n;
  };
  const inCounts = counts(incoming);
  const outCounts = counts(derived);
  const unique = (e: T) => isOurs(e) && (inCounts.get(e.name) ?? 0) <= 1 && (outCounts.get(e.name) ?? 0) <= 1;
  const ours = new Map<string, T>();
  const rest: T[] = [];
  for (const e of derived) {
    if (unique(e)) ours.set(e.name, e);
    else rest.push(e);
  }
  const restIn = incoming.filter((e) => !unique(e));
  if (restIn.length !== rest.length || JSON.stringify(restIn) !== JSON.stringify(rest)) return derived;
  const out: T[] = [];
  let r = 0;
  for (const e of incoming) {
    if (!unique(e)) out.push(rest[r++] as T);
    else {
      const mine = ours.get(e.name);
      if (mine === undefined) continue; // not derived again: dropped
      out.push(mine);
      ours.delete(e.name);
    }
  }
  out.push(...ours.values());
  return out;
}

/** Where the ServiceAccount admission plugin mounts the pod's API token into every container. */
const SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount";

/**
 * `derived` with what kube-apiserver itself adds to sm-injector's objects between two admission
 * passes: the ServiceAccount plugin's token mount in the init container, and the defaults it fills
 * in on decoding (terminationMessagePath, fieldRef.apiVersion, a projected volume's defaultMode).
 * Without them every reinvocation would patch them away (and the defaults straight back), and a
 * pod nothing happened to would not come back "unchanged". Only those exact values are kept; they
 * change nothing the init container does (the token mount is at a fixed path no output or AWS
 * token path may overlap).
 */
export function keepApiServerAdditions(incoming: V1Pod, derived: V1Pod): V1Pod {
  const inInit = incoming.spec?.initContainers?.find((c) => c?.name === INIT_CONTAINER_NAME);
  const outSpec = derived.spec;
  if (!inInit || !outSpec?.initContainers) return derived;
  const initContainers = outSpec.initContainers.map((c) =>
    c.name === INIT_CONTAINER_NAME ? withInitDefaults(inInit, c) : c,
  );
  const volumes = outSpec.volumes?.map((v) => {
    const before = incoming.spec?.volumes?.find((x) => x?.name === v.name);
    return OUR_VOLUMES.has(v.name) &&
      v.projected &&
      v.projected.defaultMode === undefined &&
      before?.projected?.defaultMode === 420
      ? withFields(v, { projected: withFields(v.projected, { defaultMode: 420 }) })
      : v;
  });
  return withFields(derived, { spec: withFields(outSpec, { initContainers, ...(volumes && { volumes }) }) });
}

function withInitDefaults(incoming: V1Container, derived: V1Container): V1Container {
  const changes: Partial<V1Container> = {};
  if (
    derived.terminationMessagePath === undefined &&
    incoming.terminationMessagePath === "/dev/termination-log"
  )
    changes.terminationMessagePath = incoming.terminationMessagePath;
  const env = derived.env?.map((e) => {
    const ref = e.valueFrom?.fieldRef;
    if (!ref || ref.apiVersion !== undefined) return e;
    const before = incoming.env?.find((x) => x?.name === e.name)?.valueFrom?.fieldRef;
    return before?.apiVersion === "v1" && before.fieldPath === ref.fieldPath
      ? withFields(e, {
          valueFrom: withFields(e.valueFrom as object, { fieldRef: withFields(ref, { apiVersion: "v1" }) }),
        })
      : e;
  });
  if (env) changes.env = env;
  const mounts = derived.volumeMounts ?? [];
  const inMounts = Array.isArray(incoming.volumeMounts) ? incoming.volumeMounts : [];
  const at = inMounts.findIndex(isServiceAccountMount);
  if (at >= 0 && !mounts.some((m) => m.mountPath === SERVICE_ACCOUNT_MOUNT_PATH)) {
    const token = inMounts[at] as V1VolumeMount;
    changes.volumeMounts = [...mounts.slice(0, at), token, ...mounts.slice(at)];
  }
  return withFields(derived, changes);
}

/** Exactly the ServiceAccount plugin's mount: its path, read-only, of a volume that is not sm-injector's. */
function isServiceAccountMount(m: unknown): boolean {
  if (typeof m !== "object" || m === null) return false;
  const { name, mountPath, readOnly, ...rest } = m as V1VolumeMount;
  return (
    typeof name === "string" &&
    !OUR_VOLUMES.has(name) &&
    mountPath === SERVICE_ACCOUNT_MOUNT_PATH &&
    readOnly === true &&
    Object.keys(rest).length === 0
  );
}
