// The inverse of mutatePod: a pod that arrives carrying sm-injector's additions (its init container,
// volumes, mounts, path variable, command wrapper, status annotation) is taken back to the pod its
// author wrote, so that admission decides on that pod's annotations alone and derives the injection
// afresh. Whatever the incoming additions claim (a hand-made SM_INJECTOR_SPEC, "status: injected")
// is dropped, never read. Pure.
//
// Exact for every pod mutatePod can produce (a property test holds strip(mutate(p)) to p), with one
// ambiguity that mutatePod itself creates: a targeted container that already set SM_INJECTOR_ENV_FILE
// (or _SECRETS_DIR) to the very path sm-injector would add looks like one it was given. Dropping it
// is harmless: re-deriving adds the same entry back.
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import {
  AWS_TOKEN_VOLUME_NAME,
  ENV_FILE_VAR,
  FIXED_KEYS,
  INIT_CONTAINER_NAME,
  PREFIX,
  SECRETS_DIR_VAR,
  STATUS_ANNOTATION,
  VOLUME_NAME,
} from "../spec/annotations.ts";
import { withFields } from "./clone.ts";
import { WRAP_SHELL, wrapperScriptPath } from "./pod.ts";

const OUR_VOLUMES: ReadonlySet<string> = new Set([VOLUME_NAME, AWS_TOKEN_VOLUME_NAME]);
const PATH_VARIABLES: ReadonlySet<string> = new Set([ENV_FILE_VAR, SECRETS_DIR_VAR]);

/**
 * The pod without anything mutatePod adds. The original is not modified. Lists left empty are
 * dropped, as the API server serialises them (omitempty), so the result compares equal to the pod
 * that was written.
 */
export function stripInjection(pod: V1Pod): V1Pod {
  const spec = pod.spec;
  const metadata = pod.metadata;
  let out = pod;
  if (isObject(metadata?.annotations) && Object.hasOwn(metadata.annotations, STATUS_ANNOTATION)) {
    const annotations = withoutKey(metadata.annotations, STATUS_ANNOTATION);
    out = withFields(out, { metadata: withOptional(metadata, "annotations", annotations) });
  }
  if (!spec) return out;
  const wrapped = wrappedContainerNames(metadata?.annotations);
  let newSpec = spec;
  if (Array.isArray(spec.initContainers)) {
    const inits = spec.initContainers
      .filter((c) => c?.name !== INIT_CONTAINER_NAME)
      .map((c) => withoutOurMounts(c));
    newSpec = withOptional(newSpec, "initContainers", inits);
  }
  if (Array.isArray(spec.containers)) {
    newSpec = withFields(newSpec, {
      containers: spec.containers.map((c) => stripContainer(c, wrapped)),
    });
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

/**
 * Names listed by the wrap-command annotation, or "all" for "true". Read here only to know which
 * wrapper to take off; compile validates the annotation, and a pod whose annotation is invalid is
 * refused whatever this returns.
 */
function wrappedContainerNames(annotations: Record<string, string> | undefined): "all" | Set<string> {
  const v = annotations?.[`${PREFIX}${FIXED_KEYS.wrapCommand}`];
  if (typeof v !== "string") return new Set();
  const t = v.trim();
  if (t === "true") return "all";
  return new Set(
    t
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  );
}

/** A regular container: our mount, the path variable we added next to it, and our wrapper off. */
function stripContainer(c: V1Container, wrapped: "all" | Set<string>): V1Container {
  const mount = (Array.isArray(c?.volumeMounts) ? c.volumeMounts : []).find((m) => m?.name === VOLUME_NAME);
  if (!mount) return withoutOurMounts(c);
  let out = withoutOurMounts(c);
  const env = Array.isArray(c.env) ? c.env : undefined;
  if (env) {
    const i = findLastIndex(env, (e) => isAddedPathVariable(e, mount.mountPath));
    if (i >= 0)
      out = withOptional(
        out,
        "env",
        env.filter((_, j) => j !== i),
      );
  }
  if ((wrapped === "all" || wrapped.has(c.name)) && isWrappedCommand(c.command)) {
    out = withFields(out, { command: (c.command as string[]).slice(WRAP_SHELL.length + 1) });
  }
  return out;
}

function isAddedPathVariable(e: unknown, mountPath: string): boolean {
  if (typeof e !== "object" || e === null) return false;
  const { name, value, ...rest } = e as { name?: unknown; value?: unknown };
  return (
    typeof name === "string" &&
    PATH_VARIABLES.has(name) &&
    typeof value === "string" &&
    (value === mountPath || value.startsWith(`${mountPath}/`)) &&
    Object.keys(rest).length === 0
  );
}

function isWrappedCommand(command: unknown): boolean {
  if (!Array.isArray(command) || command.length <= WRAP_SHELL.length) return false;
  if (!WRAP_SHELL.every((part, i) => command[i] === part)) return false;
  return wrapperScriptPath(command[WRAP_SHELL.length]) !== undefined;
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

function findLastIndex<T>(list: readonly T[], test: (x: T) => boolean): number {
  for (let i = list.length - 1; i >= 0; i--) if (test(list[i] as T)) return i;
  return -1;
}
