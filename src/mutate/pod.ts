// InjectionSpec + Pod → the injected Pod. Pure: the webhook diffs the result into a JSON patch and
// `sm-injector inject` prints it.
import type { V1Container, V1EnvVar, V1Pod, V1SecurityContext } from "@kubernetes/client-node";
import {
  ENV_FILE_VAR,
  INIT_CONTAINER_NAME,
  SECRETS_DIR_VAR,
  STATUS_ANNOTATION,
  VOLUME_NAME,
} from "../contract/annotations.ts";
import type { InjectionSpec } from "../contract/compile.ts";
import type { InjectorConfig } from "../contract/config.ts";
import { FETCH_SPEC_ENV, type FetchSpecInput } from "../contract/fetch-spec.ts";
import { TERMINATION_MESSAGE_LIMIT, terminationMessageLimit } from "../contract/fetched-versions.ts";
import { outputPath } from "../contract/paths.ts";
import { clonePlain, withFields } from "./clone.ts";
import {
  clientSettingsEnv,
  type IdentityPlan,
  planIdentity,
  type ServiceAccountIdentity,
  targetedContainers,
} from "./identity.ts";

export const STATUS_INJECTED = "injected";

export interface MutationResult {
  pod: V1Pod;
  warnings: string[];
  identity: "container" | "serviceaccount" | "none";
  /** The SM_INJECTOR_SPEC value given to the init container (admission bounds its size). */
  fetchSpec: string;
}

/** Whether the pod carries sm-injector's init container, i.e. claims to be injected already (a claim admission re-derives, never trusts). */
export function isInjected(pod: V1Pod): boolean {
  const inits = pod.spec?.initContainers;
  return Array.isArray(inits) && inits.some((c) => c?.name === INIT_CONTAINER_NAME);
}

interface RunAs {
  uid: number;
  gid: number;
  mode: 0o400 | 0o440 | 0o444;
  warning?: string;
}

/** Picks the init container's uid/gid and the file mode so that every targeted container can read the file. */
export function chooseRunAs(pod: V1Pod, spec: InjectionSpec, config: InjectorConfig): RunAs {
  const psc = pod.spec?.securityContext ?? {};
  const targets = targetedContainers(pod, spec.targets);
  const uids = new Set(targets.map((c) => c.securityContext?.runAsUser ?? psc.runAsUser));
  const gids = new Set(targets.map((c) => c.securityContext?.runAsGroup ?? psc.runAsGroup));
  const uid = uids.size === 1 ? [...uids][0] : undefined;
  const gid = gids.size === 1 ? [...gids][0] : undefined;
  const sharedGroup = psc.fsGroup ?? gid ?? psc.supplementalGroups?.[0];

  const runUid = uid !== undefined && uid !== 0 ? uid : config.defaultUid;
  const runGid = sharedGroup ?? config.defaultGid;
  let auto: 0o400 | 0o440 | 0o444;
  if (uid !== undefined && uid !== 0) auto = 0o400;
  else if (sharedGroup !== undefined && sharedGroup !== 0) auto = 0o440;
  else auto = 0o444;

  if (spec.fileMode === "auto") {
    return auto === 0o444
      ? {
          uid: runUid,
          gid: runGid,
          mode: auto,
          warning:
            "the targeted containers' user and group are unknown at admission, so the secrets file is world-readable inside the pod (mode 0444); set runAsUser or fsGroup in the pod's securityContext for 0400/0440",
        }
      : { uid: runUid, gid: runGid, mode: auto };
  }
  const mode = spec.fileMode;
  const readable = mode === 0o444 || (mode === 0o440 && auto !== 0o444) || (mode === 0o400 && auto === 0o400);
  return readable
    ? { uid: runUid, gid: runGid, mode }
    : {
        uid: runUid,
        gid: runGid,
        mode,
        warning: `file-mode ${mode.toString(8).padStart(4, "0")} may leave the file unreadable for the targeted containers (their user or group is not known to match the init container's ${runUid}:${runGid})`,
      };
}

function initSecurityContext(run: RunAs): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: run.uid,
    runAsGroup: run.gid,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** The JSON the init container reads from SM_INJECTOR_SPEC (its entries are the spec's own, not copies). */
export function buildFetchSpec(
  spec: InjectionSpec,
  mode: number,
  config: InjectorConfig,
  containersInPod = 1,
): FetchSpecInput {
  const messageBytes = terminationMessageLimit(containersInPod);
  return {
    version: 1,
    format: spec.format,
    outputDir: spec.outputDir,
    fileName: spec.fileName,
    fileMode: mode as 0o400,
    timeoutSeconds: spec.timeoutSeconds,
    concurrency: config.concurrency,
    entries: [...spec.entries],
    ...(config.batchGetSecretValue && { batch: true }),
    ...(messageBytes < TERMINATION_MESSAGE_LIMIT && { messageBytes }),
  };
}

/** The shell and flag of the command wrapper; the script follows, then the original command. */
export const WRAP_SHELL = ["/bin/sh", "-c"] as const;

/** The script that sources `file` then execs the original command (the file path is validated to [A-Za-z0-9._/-], so single quotes are enough). */
export const wrapperScript = (file: string) => `. '${file}' && exec "$0" "$@"`;

function wrapCommand(command: string[], file: string): string[] {
  return [...WRAP_SHELL, wrapperScript(file), ...command];
}

/** The init container sm-injector adds (running `sm-injector fetch`), and the spec it carries. */
function fetchContainer(
  pod0: V1Pod,
  spec: InjectionSpec,
  config: InjectorConfig,
  run: RunAs,
  identity: IdentityPlan,
): { init: V1Container; fetchSpec: string } {
  const spec0 = pod0.spec ?? { containers: [] };
  const fetchSpec = JSON.stringify(
    buildFetchSpec(
      spec,
      run.mode,
      config,
      // ours included; sidecars injected after us are not known (the digest survives truncation)
      spec0.containers.length + (spec0.initContainers?.length ?? 0) + 1,
    ),
  );
  const env: V1EnvVar[] = [
    { name: FETCH_SPEC_ENV, value: fetchSpec },
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
    { name: "POD_SERVICE_ACCOUNT", valueFrom: { fieldRef: { fieldPath: "spec.serviceAccountName" } } },
    ...identity.env,
  ];
  env.push(...clientSettingsEnv(pod0, spec.targets, new Set(env.map((e) => e.name))));
  if (!config.allowNodeIdentity) env.push({ name: "AWS_EC2_METADATA_DISABLED", value: "true" });
  const init: V1Container = {
    name: INIT_CONTAINER_NAME,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    args: ["fetch"],
    env,
    resources: clonePlain(config.resources),
    securityContext: initSecurityContext(run),
    volumeMounts: [{ name: VOLUME_NAME, mountPath: spec.outputDir }, ...identity.mounts],
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
  return { init, fetchSpec };
}

/** A targeted app container: the volume mounted read-only, the file's path in its variable, the command wrapped if asked. */
function withSecretsVolume(c: V1Container, spec: InjectionSpec, path: string, pathVar: string): V1Container {
  const changes: Partial<V1Container> = {
    volumeMounts: [
      ...(c.volumeMounts ?? []),
      { name: VOLUME_NAME, mountPath: spec.outputDir, readOnly: true },
    ],
  };
  if (!(c.env ?? []).some((e) => e.name === pathVar))
    changes.env = [...(c.env ?? []), { name: pathVar, value: path }];
  if (spec.wrap.includes(c.name) && c.command) changes.command = wrapCommand(c.command, path);
  return withFields(c, changes);
}

/**
 * Returns the injected pod. The original is never modified: what the injection changes is new, and
 * what it leaves alone is shared with the original rather than copied (the admission path diffs the
 * two, and the diff skips shared parts without walking them). The original must not carry
 * sm-injector's additions (see stripInjection, its inverse).
 */
export function mutatePod(
  original: V1Pod,
  spec: InjectionSpec,
  config: InjectorConfig,
  serviceAccount?: ServiceAccountIdentity,
): MutationResult {
  // Everything below reads `original` and builds new objects for what changes (with withFields
  // rather than spreads: see there).
  const spec0 = original.spec ?? { containers: [] };
  const pod0 = original.spec ? original : withFields(original, { spec: spec0 });
  const warnings: string[] = [];

  const run = chooseRunAs(pod0, spec, config);
  if (run.warning) warnings.push(run.warning);
  const identity = planIdentity(pod0, spec.targets, serviceAccount);
  if (identity.source === "none") {
    warnings.push(
      "no AWS identity found (no IRSA or EKS Pod Identity variables in the targeted containers and no eks.amazonaws.com/role-arn on the ServiceAccount); the init container will fail to fetch",
    );
  }
  const path = outputPath(spec);
  const pathVar = spec.format === "files" ? SECRETS_DIR_VAR : ENV_FILE_VAR;

  const { init, fetchSpec } = fetchContainer(pod0, spec, config, run, identity);

  const volumes = [
    ...(spec0.volumes ?? []),
    { name: VOLUME_NAME, emptyDir: { medium: "Memory", sizeLimit: config.volumeSizeLimit } },
    ...identity.volumes,
  ];
  const withFile = (c: V1Container): V1Container =>
    spec.targets.includes(c.name) ? withSecretsVolume(c, spec, path, pathVar) : c;
  const inits = (spec0.initContainers ?? []).map(withFile);
  // Last, but before the first init container that reads the secrets (compile refuses `last` written
  // out with one); or first.
  const firstReader = inits.findIndex((c) => spec.targets.includes(c.name));
  const at = spec.initPosition === "first" ? 0 : firstReader === -1 ? inits.length : firstReader;
  const initContainers = [...inits.slice(0, at), init, ...inits.slice(at)];
  const containers = spec0.containers.map(withFile);

  const metadata = original.metadata ?? {};
  const pod = withFields(original, {
    spec: withFields(spec0, { volumes, initContainers, containers }),
    metadata: withFields(metadata, {
      annotations: withFields(metadata.annotations ?? {}, { [STATUS_ANNOTATION]: STATUS_INJECTED }),
    }),
  });
  return { pod, warnings, identity: identity.source, fetchSpec };
}
