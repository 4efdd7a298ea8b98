// What an injected pod will fetch and as whom, read from the init container the decision added: its
// SM_INJECTOR_SPEC (the compiled spec `sm-injector fetch` reads) and its AWS identity variables. Read
// from the mutated pod rather than recomputed, so `iam-policy` and `dotenv` describe exactly what
// the webhook would hand the pod. Pure.
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import {
  INIT_CONTAINER_NAME,
  INJECT_LABEL,
  RESTART_ON_ROTATION_ANNOTATION,
  VOLUME_NAME,
} from "../contract/annotations.ts";
import type { InjectorConfig } from "../contract/config.ts";
import {
  entrySources,
  FETCH_SPEC_ENV,
  type FetchEntry,
  type FetchSpec,
  FetchSpecSchema,
  type SecretSource,
} from "../contract/fetch-spec.ts";
import { templateText } from "../contract/template.ts";
import { type DecidedPod, decideManifestPods } from "./manifests.ts";

/** The AWS identity the init container fetches with. */
export type PodIdentity =
  | { kind: "irsa"; roleArn: string; audience: string }
  /** EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI): the role is bound outside the pod. */
  | { kind: "pod-identity" }
  | { kind: "none" };

export interface PodFetch {
  /** Where the pod template is in the input, e.g. `document 2 (Deployment api)`. */
  where: string;
  namespace: string;
  serviceAccount: string;
  fetchSpec: FetchSpec;
  /** The containers that are given the file (sm-injector's volume is mounted in them). */
  containers: string[];
  identity: PodIdentity;
  /** The rotation controller watches the pod (`sm-injector.io/restart-on-rotation: "true"`). */
  restartOnRotation: boolean;
}

/** The audience EKS's pod identity webhook gives IRSA tokens when none is set. */
export const DEFAULT_IRSA_AUDIENCE = "sts.amazonaws.com";

// The secrets one entry reads: the spec's own function (a template reads one per placeholder).
export { entrySources };

/** A variable the pod receives, or a family of them known only at fetch (every key of a JSON secret). */
export type ReceivedVariable =
  | { name: string; source: SecretSource; key?: string }
  /** Every key but `except` (renamed ones, listed separately) becomes prefix + key. */
  | { prefix: string; source: SecretSource; except: string[] }
  /** Composed by a template (its text in the annotation syntax) from `sources`. */
  | { name: string; template: string; sources: SecretSource[] };

/** The variables one entry sets. The one place that knows which entry kinds set which variables. */
export function entryVariables(entry: FetchEntry): ReceivedVariable[] {
  switch (entry.kind) {
    case "value":
      return [
        entry.key === undefined
          ? { name: entry.env, source: entry.source }
          : { name: entry.env, source: entry.source, key: entry.key },
      ];
    case "expand": {
      const { source, prefix, rename, keys } = entry;
      if (keys) return keys.map((k) => ({ name: rename[k] ?? prefix + k, source, key: k }));
      const renamed = Object.entries(rename).map(([k, name]) => ({ name, source, key: k }));
      return [...renamed, { prefix, source, except: Object.keys(rename) }];
    }
    case "template":
      return [{ name: entry.env, template: templateText(entry), sources: entrySources(entry) }];
    default:
      return unknownEntry(entry);
  }
}

/** A new kind of entry must say here which variables it sets (the compiler stops at `never` until it does). */
export function unknownEntry(entry: never): never {
  throw new Error(`unknown fetch entry kind ${JSON.stringify((entry as { kind?: unknown }).kind)}`);
}

/** Every secret a fetch spec reads (each entry's sources, in order, duplicates kept). */
export function specSources(spec: FetchSpec): SecretSource[] {
  return spec.entries.flatMap(entrySources);
}

/** What the decided pod will fetch, or why that cannot be told (the webhook refused it). */
export function podFetchOf(pod: DecidedPod): PodFetch | { where: string; error: string } {
  const { decision, where, namespace } = pod;
  if (!("pod" in decision)) return { where, error: decision.message };
  const mutated = decision.pod;
  const init = (mutated.spec?.initContainers ?? []).find((c) => c.name === INIT_CONTAINER_NAME);
  const raw = init?.env?.find((e) => e.name === FETCH_SPEC_ENV)?.value;
  const parsed = raw === undefined ? undefined : FetchSpecSchema.safeParse(parseJson(raw));
  if (!init || !parsed?.success)
    return { where, error: `internal error: the injected pod has no readable ${FETCH_SPEC_ENV}` };
  return {
    where,
    namespace,
    serviceAccount: decision.serviceAccount,
    fetchSpec: parsed.data,
    containers: (mutated.spec?.containers ?? [])
      .filter((c) => (c.volumeMounts ?? []).some((m) => m.name === VOLUME_NAME))
      .map((c) => c.name),
    identity: identityOf(mutated, init),
    restartOnRotation: mutated.metadata?.annotations?.[RESTART_ON_ROTATION_ANNOTATION]?.trim() === "true",
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function envValue(c: V1Container, name: string): string | undefined {
  return c.env?.find((e) => e.name === name && e.valueFrom === undefined)?.value;
}

function identityOf(pod: V1Pod, init: V1Container): PodIdentity {
  const roleArn = envValue(init, "AWS_ROLE_ARN");
  if (roleArn !== undefined) return { kind: "irsa", roleArn, audience: tokenAudience(pod, init) };
  if (init.env?.some((e) => e.name === "AWS_CONTAINER_CREDENTIALS_FULL_URI")) return { kind: "pod-identity" };
  return { kind: "none" };
}

/**
 * The audience of the token the init container presents to STS: the projected volume's that holds
 * AWS_WEB_IDENTITY_TOKEN_FILE (the trust policy's `aud` must equal it), else EKS's default.
 */
function tokenAudience(pod: V1Pod, init: V1Container): string {
  const file = envValue(init, "AWS_WEB_IDENTITY_TOKEN_FILE");
  for (const m of init.volumeMounts ?? []) {
    const dir = `${m.mountPath.replace(/\/+$/, "")}/`;
    if (file === undefined || !file.startsWith(dir)) continue;
    const volume = (pod.spec?.volumes ?? []).find((v) => v.name === m.name);
    const token = volume?.projected?.sources?.find(
      (s) => s.serviceAccountToken?.path === file.slice(dir.length),
    )?.serviceAccountToken;
    if (token?.audience) return token.audience;
  }
  return DEFAULT_IRSA_AUDIENCE;
}

/**
 * What every opted-in pod template of a manifest stream will fetch, decided as `inject` decides
 * them; errors name each pod the webhook would refuse (with its message) and unreadable input.
 */
export async function podFetchesOf(
  text: string,
  config: InjectorConfig,
): Promise<{ pods: PodFetch[]; errors: string[] }> {
  const decided = await decideManifestPods(text, config);
  if (!decided.ok) return { pods: [], errors: decided.errors };
  const pods: PodFetch[] = [];
  const errors: string[] = [];
  for (const d of decided.pods) {
    const f = podFetchOf(d);
    if ("error" in f) errors.push(`${f.where}: ${f.error}`);
    else pods.push(f);
  }
  if (decided.pods.length === 0)
    errors.push(
      `no pod template in the input opts in (label ${INJECT_LABEL}: "true"), so no pod fetches anything`,
    );
  return { pods, errors };
}
