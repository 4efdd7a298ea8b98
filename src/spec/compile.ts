// Annotations + the pod they sit on → a validated InjectionSpec, or every problem found, each
// naming its annotation and saying how to fix it. Pure: no I/O.
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import {
  ENV_FILE_VAR,
  ENV_FROM_KEY,
  ENV_KEY,
  FIXED_KEYS,
  PREFIX,
  SECRETS_DIR_VAR,
  STATUS_ANNOTATION,
} from "./annotations.ts";
import type { InjectorConfig } from "./config.ts";
import {
  ENV_NAME_PATTERN,
  type FetchEntry,
  OUTPUT_FORMATS,
  type OutputFormat,
  type SecretSource,
  sourceKey,
} from "./fetch-spec.ts";
import {
  checkVersionId,
  checkVersionStage,
  type ParsedSecretId,
  parseReference,
  parseSecretId,
  REGION_PATTERN,
} from "./reference.ts";
import { parseSimpleYamlList, parseStructured, type StructuredEntry } from "./structured.ts";

export type FileModeSetting = "auto" | 0o400 | 0o440 | 0o444;

export interface InjectionSpec {
  readonly entries: readonly FetchEntry[];
  readonly format: OutputFormat;
  readonly outputDir: string;
  readonly fileName: string;
  readonly fileMode: FileModeSetting;
  /** Containers (of spec.containers) that get the mount and the path variable. */
  readonly targets: readonly string[];
  /** Targeted containers whose command is wrapped to source the file first. */
  readonly wrap: readonly string[];
  readonly initPosition: "first" | "last";
  readonly timeoutSeconds: number;
  /** Variable names known at admission (expanded JSON keys are only known at fetch time). */
  readonly variables: readonly string[];
  /** Distinct secret ids, for audit logs. */
  readonly secretIds: readonly string[];
}

export type CompileResult =
  | { ok: true; spec: InjectionSpec; warnings: string[] }
  | { ok: false; errors: string[]; warnings: string[] };

/** Paths an output directory must never cover: they hold the pod's identity tokens. */
const PROTECTED_PATHS = [
  "/var/run/secrets/kubernetes.io",
  "/var/run/secrets/eks.amazonaws.com",
  "/var/run/secrets/pods.eks.amazonaws.com",
  "/run/secrets/kubernetes.io",
  "/run/secrets/eks.amazonaws.com",
  "/run/secrets/pods.eks.amazonaws.com",
];

/** Read-only in bash: `export UID=…` makes sourcing the shell file fail. */
const READONLY_SHELL_VARIABLES = new Set([
  "UID",
  "EUID",
  "PPID",
  "SHELLOPTS",
  "BASHOPTS",
  "BASH_VERSINFO",
  "BASHPID",
  "GROUPS",
]);

/** Variables whose override would change how the app or the shell runs. */
const RISKY_VARIABLES = new Set([
  "PATH",
  "HOME",
  "LD_PRELOAD",
  "LD_LIBRARY_PATH",
  "NODE_OPTIONS",
  "PYTHONPATH",
  "IFS",
  "ENV",
  "BASH_ENV",
]);

function annotationName(key: string): string {
  return `${PREFIX}${key}`;
}

function effectiveEnvRegion(container: V1Container | undefined): string | undefined {
  const env = container?.env ?? [];
  for (const name of ["AWS_REGION", "AWS_DEFAULT_REGION"]) {
    const v = env.find((e) => e.name === name && e.value !== undefined && e.valueFrom === undefined)?.value;
    if (v) return v;
  }
  return undefined;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (dp[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = dp[i] as number[];
      const prev = dp[i - 1] as number[];
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return (dp[a.length] as number[])[b.length] as number;
}

const KNOWN_KEYS = [...Object.values(FIXED_KEYS), "env.<VAR>", ENV_FROM_KEY, "status"];

function suggestKey(key: string): string {
  const candidates = [...Object.values(FIXED_KEYS), ENV_FROM_KEY];
  const base = key.split(".")[0] ?? key;
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of [...candidates, "env"]) {
    const d = editDistance(base.toLowerCase(), c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best !== undefined && bestD <= 2) {
    return best === "env" ? ` Did you mean ${PREFIX}env.<VAR>?` : ` Did you mean ${PREFIX}${best}?`;
  }
  return ` Known keys: ${KNOWN_KEYS.join(", ")}.`;
}

function formatZodIssues(prefix: string, error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = i.path
      .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
      .join("")
      .replace(/^\./, "");
    if (i.code === "unrecognized_keys") {
      return `${prefix}${path.startsWith("[") ? path : path ? ` ${path}` : ""}: unknown field(s) ${i.keys.map((k) => `"${k}"`).join(", ")} (known: secret, env, key, prefix, keys, rename, versionStage, versionId, region, optional)`;
    }
    return `${prefix}${path.startsWith("[") ? path : path ? ` ${path}` : ""}: ${i.message}`;
  });
}

/** Parses and validates a pod's sm-injector annotations against the pod and the operator's config. */
export function compileInjectionSpec(pod: V1Pod, config: InjectorConfig): CompileResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  const annotations = pod.metadata?.annotations ?? {};
  const containers = pod.spec?.containers ?? [];

  type Draft = { annotation: string; entry: FetchEntry; parsed: ParsedSecretId; explicitRegion?: string };
  const drafts: Draft[] = [];
  const fixed: Partial<Record<keyof typeof FIXED_KEYS, string>> = {};

  for (const [fullKey, value] of Object.entries(annotations)) {
    if (!fullKey.startsWith(PREFIX)) continue;
    const key = fullKey.slice(PREFIX.length);
    if (fullKey === STATUS_ANNOTATION) continue;

    if (key.startsWith(ENV_KEY)) {
      const variable = key.slice(ENV_KEY.length);
      if (!ENV_NAME_PATTERN.test(variable)) {
        errors.push(
          `${fullKey}: "${variable}" is not a valid environment variable name; use letters, digits and _, not starting with a digit (e.g. ${PREFIX}env.DB_PASSWORD)`,
        );
        continue;
      }
      const ref = parseReference(value, { expand: false });
      if (!ref.ok) {
        errors.push(`${fullKey}: ${ref.error}`);
        continue;
      }
      const r = ref.value;
      drafts.push({
        annotation: fullKey,
        parsed: r,
        entry: valueEntry(source(r), variable, r.key, r.optional),
      });
      continue;
    }

    if (key === ENV_FROM_KEY || key.startsWith(`${ENV_FROM_KEY}.`)) {
      const ref = parseReference(value, { expand: true });
      if (!ref.ok) {
        errors.push(`${fullKey}: ${ref.error}`);
        continue;
      }
      const r = ref.value;
      drafts.push({
        annotation: fullKey,
        parsed: r,
        entry: {
          kind: "expand",
          source: source(r),
          prefix: r.prefix ?? "",
          rename: {},
          optional: r.optional,
        },
      });
      continue;
    }

    const fixedName = (Object.keys(FIXED_KEYS) as (keyof typeof FIXED_KEYS)[]).find(
      (k) => FIXED_KEYS[k] === key,
    );
    if (fixedName === undefined) {
      errors.push(`${fullKey}: unknown sm-injector annotation.${suggestKey(key)}`);
      continue;
    }
    fixed[fixedName] = value;
  }

  if (fixed.secrets !== undefined) {
    const name = annotationName(FIXED_KEYS.secrets);
    let doc: unknown = parseSimpleYamlList(fixed.secrets);
    if (doc === undefined) {
      try {
        doc = parseYaml(fixed.secrets, { maxAliasCount: 0, prettyErrors: false });
      } catch (e) {
        errors.push(`${name}: is not valid YAML or JSON (${(e as Error).message.split("\n")[0]})`);
      }
    }
    if (doc !== undefined) {
      const parsed = parseStructured(doc);
      if (!parsed.success) errors.push(...formatZodIssues(name, parsed.error));
      else {
        parsed.data.forEach((item, i) => {
          const where = `${name}[${i}]`;
          const d = structuredEntry(where, item);
          if ("error" in d) errors.push(...d.error);
          else drafts.push(d);
        });
      }
    }
  }

  // Output format, location and mode.
  let format: OutputFormat = config.defaultFormat;
  if (fixed.format !== undefined) {
    if ((OUTPUT_FORMATS as readonly string[]).includes(fixed.format)) format = fixed.format as OutputFormat;
    else
      errors.push(
        `${annotationName(FIXED_KEYS.format)}: "${fixed.format}" is not a format; use one of ${OUTPUT_FORMATS.join(", ")}`,
      );
  }

  let outputDir = config.defaultOutputDir;
  if (fixed.outputDir !== undefined) {
    const e = checkOutputDir(fixed.outputDir, config.allowedOutputRoots);
    if (e) errors.push(`${annotationName(FIXED_KEYS.outputDir)}: ${e}`);
    else outputDir = fixed.outputDir;
  }

  let fileName = format === "json" ? "env.json" : "env";
  if (fixed.fileName !== undefined) {
    if (format === "files") {
      warnings.push(
        `${annotationName(FIXED_KEYS.fileName)} is ignored with format files (each variable is its own file)`,
      );
    } else if (
      !/^[A-Za-z0-9._-]{1,255}$/.test(fixed.fileName) ||
      fixed.fileName === "." ||
      fixed.fileName === ".."
    ) {
      errors.push(
        `${annotationName(FIXED_KEYS.fileName)}: "${fixed.fileName}" is not a plain file name (letters, digits, . _ -; no slashes)`,
      );
    } else fileName = fixed.fileName;
  }

  let fileMode: FileModeSetting = "auto";
  if (fixed.fileMode !== undefined) {
    const modes: Record<string, FileModeSetting> = {
      auto: "auto",
      "0400": 0o400,
      "0440": 0o440,
      "0444": 0o444,
      "400": 0o400,
      "440": 0o440,
      "444": 0o444,
    };
    const m = modes[fixed.fileMode.trim()];
    if (m === undefined)
      errors.push(
        `${annotationName(FIXED_KEYS.fileMode)}: "${fixed.fileMode}" is not allowed; use auto, "0400", "0440" or "0444" (quoted in YAML)`,
      );
    else fileMode = m;
  }

  // Containers.
  const names = containers.map((c) => c.name);
  let targets = names;
  if (fixed.containers !== undefined) {
    const listed = splitList(fixed.containers);
    const unknown = listed.filter((n) => !names.includes(n));
    const initNames = (pod.spec?.initContainers ?? []).map((c) => c.name);
    for (const n of unknown) {
      errors.push(
        initNames.includes(n)
          ? `${annotationName(FIXED_KEYS.containers)}: "${n}" is an init container; only regular containers can be targeted (init containers may run before the secrets are fetched)`
          : `${annotationName(FIXED_KEYS.containers)}: the pod has no container "${n}" (containers: ${names.join(", ") || "none"})`,
      );
    }
    if (listed.length === 0)
      errors.push(
        `${annotationName(FIXED_KEYS.containers)}: lists no container; remove it to target all containers`,
      );
    targets = listed.filter((n) => names.includes(n));
  }

  let wrap: string[] = [];
  if (fixed.wrapCommand !== undefined) {
    const v = fixed.wrapCommand.trim();
    const listed = v === "true" ? targets : v === "false" ? [] : splitList(v);
    for (const n of listed) {
      const c = containers.find((x) => x.name === n);
      if (!c) {
        errors.push(
          `${annotationName(FIXED_KEYS.wrapCommand)}: the pod has no container "${n}"; use "true", "false" or container names`,
        );
      } else if (!targets.includes(n)) {
        errors.push(
          `${annotationName(FIXED_KEYS.wrapCommand)}: container "${n}" is not targeted by ${annotationName(FIXED_KEYS.containers)}`,
        );
      } else if (!c.command || c.command.length === 0) {
        errors.push(
          `${annotationName(FIXED_KEYS.wrapCommand)}: container "${n}" has no explicit command, so its image entrypoint is unknown to the webhook (sm-injector never looks images up in registries). Set the container's command to the image's entrypoint, e.g. command: ["uvicorn"] with args: ["app.main:app"], or source ${outputDir}/${fileName} in your own entrypoint.`,
        );
      } else wrap.push(n);
    }
    if (listed.length > 0 && format !== "shell") {
      errors.push(
        `${annotationName(FIXED_KEYS.wrapCommand)}: needs format shell (the wrapper sources the file with /bin/sh); the pod uses ${format}`,
      );
      wrap = [];
    }
  }

  // Read by `sm-injector rotation` from the pod; checked here so that a typo is refused at apply time.
  if (fixed.restartOnRotation !== undefined) {
    const v = fixed.restartOnRotation.trim();
    if (v !== "true" && v !== "false")
      errors.push(
        `${annotationName(FIXED_KEYS.restartOnRotation)}: "${v}" is not allowed; use "true" or "false"`,
      );
  }

  let initPosition: "first" | "last" = "last";
  if (fixed.initPosition !== undefined) {
    const v = fixed.initPosition.trim();
    if (v === "first" || v === "last") initPosition = v;
    else errors.push(`${annotationName(FIXED_KEYS.initPosition)}: "${v}" is not allowed; use first or last`);
  }

  let timeoutSeconds = config.defaultTimeoutSeconds;
  if (fixed.timeout !== undefined) {
    const n = Number(fixed.timeout.trim());
    if (!Number.isInteger(n) || n < 1 || n > config.maxTimeoutSeconds) {
      errors.push(
        `${annotationName(FIXED_KEYS.timeout)}: "${fixed.timeout}" must be a whole number of seconds from 1 to ${config.maxTimeoutSeconds}`,
      );
    } else timeoutSeconds = n;
  }

  // Regions: ARN > per-entry > annotation > the first target's AWS_REGION > webhook default.
  let podRegion: string | undefined;
  if (fixed.region !== undefined) {
    if (!REGION_PATTERN.test(fixed.region.trim())) {
      errors.push(
        `${annotationName(FIXED_KEYS.region)}: "${fixed.region}" is not an AWS region (e.g. eu-west-1)`,
      );
    } else podRegion = fixed.region.trim();
  }
  const firstTarget = containers.find((c) => c.name === targets[0]);
  const fallbackRegion = podRegion ?? effectiveEnvRegion(firstTarget) ?? config.defaultRegion;
  const entries: FetchEntry[] = [];
  for (const d of drafts) {
    const region = d.parsed.arnRegion ?? d.explicitRegion ?? fallbackRegion;
    if (d.parsed.arnRegion && d.explicitRegion && d.parsed.arnRegion !== d.explicitRegion) {
      errors.push(
        `${d.annotation}: region ${d.explicitRegion} contradicts the ARN's region ${d.parsed.arnRegion}; remove region`,
      );
    }
    if (region === undefined) {
      errors.push(
        `${d.annotation}: no AWS region for "${d.parsed.secretId}"; set ${annotationName(FIXED_KEYS.region)}, AWS_REGION in the container's env, use an ARN, or configure the webhook's default region`,
      );
      continue;
    }
    entries.push(withRegion(d.entry, region));
  }

  // Variables: names must be unique across every form.
  const owners = new Map<string, string>();
  const variables: string[] = [];
  const claim = (variable: string, annotation: string) => {
    const prev = owners.get(variable);
    if (prev !== undefined) {
      errors.push(
        prev === annotation
          ? `${annotation}: variable ${variable} is set twice; give each a distinct name`
          : `${annotation}: variable ${variable} is already set by ${prev}; give each a distinct name`,
      );
    } else {
      owners.set(variable, annotation);
      variables.push(variable);
    }
  };
  for (const d of drafts) {
    if (d.entry.kind === "value") claim(d.entry.env, d.annotation);
    else {
      for (const v of Object.values(d.entry.rename)) claim(v, d.annotation);
      if (d.entry.keys) {
        for (const k of d.entry.keys) {
          if (d.entry.rename[k] === undefined) {
            const v = d.entry.prefix + k;
            if (ENV_NAME_PATTERN.test(v)) claim(v, d.annotation);
            else
              errors.push(
                `${d.annotation}: key "${k}" would become "${v}", which is not a valid variable name; add a rename for it`,
              );
          }
        }
      }
      if (d.entry.prefix !== "" && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(d.entry.prefix)) {
        errors.push(
          `${d.annotation}: prefix "${d.entry.prefix}" must be letters, digits and _ and not start with a digit`,
        );
      }
    }
  }

  if (drafts.length === 0 && errors.length === 0) {
    errors.push(
      `the pod has the label ${PREFIX}inject=true but no secrets to fetch; add e.g. ${PREFIX}env.DATABASE_URL: erp/production/database#DATABASE_URL, or remove the label`,
    );
  }
  // There are never more distinct sources than entries, so count them only when that could matter.
  if (entries.length > config.maxSecrets) {
    const distinct = new Set(entries.map((e) => sourceKey(e.source)));
    if (distinct.size > config.maxSecrets) {
      errors.push(
        `the pod references ${distinct.size} distinct secrets; this webhook allows at most ${config.maxSecrets} per pod (combine values into JSON secrets)`,
      );
    }
  }

  if (format === "shell") {
    for (const v of variables.filter((x) => READONLY_SHELL_VARIABLES.has(x))) {
      errors.push(
        `${owners.get(v)}: ${v} is read-only in bash, so sourcing the env file would fail; choose another variable name`,
      );
    }
  }

  // Warnings: legal but suspicious.
  const targeted = containers.filter((x) => targets.includes(x.name));
  for (const v of variables) {
    if (RISKY_VARIABLES.has(v))
      warnings.push(
        `variable ${v} from Secrets Manager will override the container's own ${v} when the file is sourced`,
      );
    else if (v.startsWith("AWS_"))
      warnings.push(`variable ${v} may change the AWS credentials or region the app uses`);
    for (const c of targeted) {
      if ((c.env ?? []).some((e) => e.name === v)) {
        warnings.push(
          `container ${c.name} also sets ${v} in its env; the value from Secrets Manager wins where the file is sourced`,
        );
      }
    }
  }
  for (const d of drafts) {
    if (/-[A-Za-z0-9]{6}$/.test(d.parsed.name) && !d.parsed.secretId.startsWith("arn:")) {
      warnings.push(
        `${d.annotation}: "${d.parsed.name}" ends with a hyphen and six characters, which Secrets Manager may read as an ARN suffix; prefer a full ARN or another name`,
      );
    }
    if (d.entry.source.versionStage === "AWSPENDING") {
      warnings.push(
        `${d.annotation}: versionStage AWSPENDING is a rotation in progress; pods normally want AWSCURRENT`,
      );
    }
  }
  for (const c of targeted) {
    for (const m of c.volumeMounts ?? []) {
      if (m.mountPath.replace(/\/+$/, "") === outputDir) {
        errors.push(
          `container ${c.name} already mounts ${m.name} at ${outputDir}; choose another ${annotationName(FIXED_KEYS.outputDir)}`,
        );
      }
    }
    if ((c.env ?? []).some((e) => e.name === ENV_FILE_VAR || e.name === SECRETS_DIR_VAR)) {
      warnings.push(
        `container ${c.name} sets ${ENV_FILE_VAR}/${SECRETS_DIR_VAR} itself; sm-injector leaves it as is`,
      );
    }
  }

  if (errors.length > 0) return { ok: false, errors, warnings };
  return {
    ok: true,
    warnings,
    spec: {
      entries,
      format,
      outputDir,
      fileName,
      fileMode,
      targets,
      wrap,
      initPosition,
      timeoutSeconds,
      variables,
      secretIds: [...new Set(entries.map((e) => e.source.secretId))],
    },
  };
}

// The common shapes of these objects are written as literals: V8 builds those many times faster
// than objects grown field by field or with conditional spreads, and an admission builds dozens.
// The key order is the spec schema's; it matters, because entries are serialized into the init
// container's spec.
function source(r: { secretId: string; versionStage?: string; versionId?: string }): SecretSource {
  const { secretId, versionStage, versionId } = r;
  if (versionStage === undefined && versionId === undefined) return { secretId };
  if (versionId === undefined) return { secretId, versionStage };
  if (versionStage === undefined) return { secretId, versionId };
  return { secretId, versionStage, versionId };
}

function valueEntry(
  source: SecretSource,
  env: string,
  key: string | undefined,
  optional: boolean,
): FetchEntry {
  return key === undefined
    ? { kind: "value", source, env, optional }
    : { kind: "value", source, env, key, optional };
}

/** The entry with its source's region set (sources are built without one). */
function withRegion(e: FetchEntry, region: string): FetchEntry {
  const s = e.source;
  let src: SecretSource;
  if (s.region !== undefined) src = { ...s, region };
  else if (s.versionStage === undefined && s.versionId === undefined) src = { secretId: s.secretId, region };
  else {
    // Not `{ ...s, region }`: a spread copy that gains a key is slow on Node 20 (see withFields).
    src = source(s);
    src.region = region;
  }
  return e.kind === "value" ? valueEntry(src, e.env, e.key, e.optional) : { ...e, source: src };
}

function splitList(v: string): string[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function structuredEntry(
  where: string,
  item: StructuredEntry,
):
  | { annotation: string; entry: FetchEntry; parsed: ParsedSecretId; explicitRegion?: string }
  | { error: string[] } {
  const errs: string[] = [];
  const id = parseSecretId(item.secret);
  if (!id.ok) errs.push(`${where}.secret: ${id.error}`);
  if (item.versionStage !== undefined && item.versionId !== undefined)
    errs.push(`${where}: set either versionStage or versionId, not both`);
  if (item.versionStage !== undefined) {
    const e = checkVersionStage(item.versionStage);
    if (e) errs.push(`${where}.${e}`);
  }
  if (item.versionId !== undefined) {
    const e = checkVersionId(item.versionId);
    if (e) errs.push(`${where}.${e}`);
  }
  if (item.region !== undefined && !REGION_PATTERN.test(item.region))
    errs.push(`${where}.region: "${item.region}" is not an AWS region (e.g. eu-west-1)`);
  if (item.env !== undefined) {
    if (!ENV_NAME_PATTERN.test(item.env))
      errs.push(
        `${where}.env: "${item.env}" is not a valid environment variable name (letters, digits, _; not starting with a digit)`,
      );
    for (const f of ["prefix", "keys", "rename"] as const) {
      if (item[f] !== undefined)
        errs.push(
          `${where}: ${f} expands a JSON secret into many variables and cannot be combined with env; use key to pick one value`,
        );
    }
  } else {
    if (item.key !== undefined) errs.push(`${where}: key "${item.key}" needs env, the variable to put it in`);
    for (const [k, v] of Object.entries(item.rename ?? {})) {
      if (!ENV_NAME_PATTERN.test(v))
        errs.push(`${where}.rename.${k}: "${v}" is not a valid environment variable name`);
      if (item.keys && !item.keys.includes(k))
        errs.push(`${where}.rename.${k}: renames a key that keys does not list`);
    }
  }
  if (errs.length > 0 || !id.ok) return { error: errs };
  const src = source({
    secretId: id.value.secretId,
    versionStage: item.versionStage,
    versionId: item.versionId,
  });
  const entry: FetchEntry =
    item.env !== undefined
      ? valueEntry(src, item.env, item.key, item.optional ?? false)
      : {
          kind: "expand",
          source: src,
          prefix: item.prefix ?? "",
          ...(item.keys !== undefined && { keys: item.keys }),
          rename: item.rename ?? {},
          optional: item.optional ?? false,
        };
  return {
    annotation: where,
    entry,
    parsed: id.value,
    ...(item.region !== undefined && { explicitRegion: item.region }),
  };
}

function checkOutputDir(dir: string, roots: readonly string[]): string | undefined {
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(dir)) {
    return `"${dir}" must be an absolute path of letters, digits and . _ - (e.g. /run/sm-injector), without a trailing slash`;
  }
  if (dir.split("/").some((s) => s === "." || s === ".."))
    return `"${dir}" must not contain . or .. segments`;
  if (!roots.some((r) => dir.startsWith(`${r}/`))) {
    return `"${dir}" is outside the allowed roots (${roots.join(", ")}); choose a directory under one of them, e.g. /run/sm-injector`;
  }
  const hit = PROTECTED_PATHS.find((p) => dir === p || dir.startsWith(`${p}/`) || p.startsWith(`${dir}/`));
  if (hit)
    return `"${dir}" overlaps ${hit}, where Kubernetes or EKS mounts the pod's identity token; choose e.g. /run/sm-injector`;
  return undefined;
}
