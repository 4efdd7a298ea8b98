// Annotations + the pod they sit on → a validated InjectionSpec, or every problem found, each
// naming its annotation and saying how to fix it. Pure: no I/O.
import type { V1Container, V1Pod, V1Volume } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { ENV_NAME_PATTERN, shellRefusal } from "../envfile/names.ts";
import { OUTPUT_FORMATS, type OutputFormat } from "../envfile/types.ts";
import {
  ANNOTATIONS,
  AWS_TOKEN_VOLUME_NAME,
  annotationOf,
  documentedKey,
  ENV_FILE_VAR,
  FIXED_KEYS,
  type FixedAnnotation,
  formatCount,
  formatSize,
  KNOWN_KEYS,
  MAX_ANNOTATION_COUNT,
  MAX_ANNOTATION_KEY_BYTES,
  MAX_ANNOTATION_VALUE_BYTES,
  MAX_ANNOTATIONS_TOTAL_BYTES,
  MAX_SUGGESTED_KEY_CHARS,
  MAX_YAML_BYTES,
  MAX_YAML_INDENT,
  MAX_YAML_NESTING,
  OWN_TOKEN_DIR,
  PREFIX,
  ProblemList,
  quote,
  SECRETS_DIR_VAR,
  STATUS_ANNOTATION,
  utf8Bytes,
  VOLUME_NAME,
} from "./annotations.ts";
import type { InjectorConfig } from "./config.ts";
import {
  entrySources,
  type FetchEntry,
  MAX_FETCH_ENTRIES,
  type SecretSource,
  sourceKey,
  type TemplateEntry,
  type TemplateReference,
  templateReferences,
} from "./fetch-spec.ts";
import { absoluteDirProblem } from "./paths.ts";
import {
  checkVersionId,
  checkVersionStage,
  type ParsedReference,
  type ParsedSecretId,
  parseReference,
  parseSecretId,
  REGION_PATTERN,
} from "./reference.ts";
import {
  checkStructuredLimits,
  parseSimpleYamlList,
  SECRET_REQUIRED,
  STRUCTURED_FIELDS,
  type StructuredEntry,
  StructuredSchema,
} from "./structured.ts";
import { countPlaceholders, parseTemplate, templateLimitProblem } from "./template.ts";
import type { TemplateFilter } from "./template-filters.ts";

export type FileModeSetting = "auto" | 0o400 | 0o440 | 0o444;

export interface InjectionSpec {
  readonly entries: readonly FetchEntry[];
  readonly format: OutputFormat;
  readonly outputDir: string;
  readonly fileName: string;
  readonly fileMode: FileModeSetting;
  /** Containers (regular, or init containers the fetch runs before) that get the mount and the path variable. */
  readonly targets: readonly string[];
  /** Targeted containers whose command is wrapped to source the file first. */
  readonly wrap: readonly string[];
  /** first; or last: after the init containers, but before the first targeted one. */
  readonly initPosition: "first" | "last";
  readonly timeoutSeconds: number;
  /** Variable names known at admission (expanded JSON keys are only known at fetch time). */
  readonly variables: readonly string[];
  /** Distinct secret ids, for audit logs. */
  readonly secretIds: readonly string[];
}

export type CompileResult =
  | { ok: true; spec: InjectionSpec; warnings: string[] }
  | {
      ok: false;
      /** At most MAX_REPORTED_PROBLEMS messages, then one saying how many more there were. */
      errors: string[];
      warnings: string[];
      /** Every problem found, including those `errors` only counts. */
      problemCount: number;
      /** The annotations were over a size or count limit, so none of them was parsed. */
      overLimits?: true;
    };

/** Paths an output directory must never cover: they hold the pod's identity tokens. */
const PROTECTED_PATHS = [
  "/var/run/secrets/kubernetes.io",
  "/var/run/secrets/eks.amazonaws.com",
  "/var/run/secrets/pods.eks.amazonaws.com",
  "/run/secrets/kubernetes.io",
  "/run/secrets/eks.amazonaws.com",
  "/run/secrets/pods.eks.amazonaws.com",
];

/** Where sm-injector itself mounts a token into its init container (IRSA added from the ServiceAccount). */
const OWN_MOUNT_PATHS = [OWN_TOKEN_DIR, sameDirUnderRun(OWN_TOKEN_DIR)];

/** Volume names sm-injector gives to what it adds; a pod that uses them would collide or share them. */
const RESERVED_VOLUME_NAMES = [VOLUME_NAME, AWS_TOKEN_VOLUME_NAME];

/** Volume types the kubelet always mounts read-only: nothing can be mounted inside them. */
const READ_ONLY_VOLUME_TYPES = ["configMap", "secret", "downwardAPI", "projected"] as const;

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

/** An annotation key as messages show it: as is when it is a plain short name, else quoted. */
function shownKey(key: string): string {
  return key.length <= MAX_ANNOTATION_KEY_BYTES && /^[A-Za-z0-9._/-]+$/.test(key) ? key : quote(key);
}

/** At most `max` names, then how many more: lists built from a pod stay short. */
function listNames(names: readonly string[], max = 10): string {
  if (names.length <= max) return names.join(", ");
  return `${names.slice(0, max).join(", ")} and ${formatCount(names.length - max)} more`;
}

/** Literal (not valueFrom) AWS_REGION, AWS_DEFAULT_REGION of a container, in that order. */
function literalRegionEnv(container: V1Container | undefined): { name: string; value: string }[] {
  if (!container?.env?.length) return [];
  const found: { name: string; value: string }[] = [];
  for (const name of ["AWS_REGION", "AWS_DEFAULT_REGION"]) {
    const e = (container?.env ?? []).find((x) => x.name === name && x.value && x.valueFrom === undefined);
    if (e?.value) found.push({ name, value: e.value });
  }
  return found;
}

function effectiveEnvRegion(container: V1Container | undefined): string | undefined {
  return literalRegionEnv(container)[0]?.value;
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

function suggestKey(key: string): string {
  const known = ` Known keys: ${KNOWN_KEYS.join(", ")}.`;
  // Edit distance is quadratic in the key's length: only short keys get a suggestion.
  if (key.length > MAX_SUGGESTED_KEY_CHARS) return known;
  const candidates = [...Object.values(FIXED_KEYS), ANNOTATIONS.envFrom.key, ANNOTATIONS.env.key];
  const base = key.split(".")[0] ?? key;
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(base.toLowerCase(), c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best !== undefined && bestD <= 2) {
    return best === ANNOTATIONS.env.key
      ? ` Did you mean ${PREFIX}${documentedKey(ANNOTATIONS.env)}?`
      : ` Did you mean ${PREFIX}${best}?`;
  }
  return known;
}

function formatZodIssues(prefix: string, error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const path = i.path
      .map((p) => (typeof p === "number" ? `[${p}]` : `.${quotedField(String(p))}`))
      .join("")
      .replace(/^\./, "");
    if (i.code === "unrecognized_keys") {
      return `${prefix}${path.startsWith("[") ? path : path ? ` ${path}` : ""}: unknown field(s) ${listNames(
        i.keys.map((k) => quote(k)),
        5,
      )} (known: ${STRUCTURED_FIELDS.join(", ")})`;
    }
    return `${prefix}${path.startsWith("[") ? path : path ? ` ${path}` : ""}: ${i.message}`;
  });
}

/** A field name or JSON key in a path: as is when plain, else quoted. */
function quotedField(name: string): string {
  return name.length <= 64 && /^[A-Za-z0-9_-]+$/.test(name) ? name : quote(name, 64);
}

/**
 * The size limits, checked on the raw annotations before any of them is parsed: one problem per
 * limit breached (capped), each naming the limit. Costs one pass over the keys.
 */
export function checkAnnotationLimits(annotations: Readonly<Record<string, string>>): string[] {
  const problems = new ProblemList();
  // The count first, on key prefixes alone: a pod over it is refused for that, without measuring
  // every one of its (possibly tens of thousands of) annotations.
  let count = 0;
  for (const key in annotations) if (key.startsWith(PREFIX)) count++;
  if (count > MAX_ANNOTATION_COUNT) {
    problems.push(annotationCountProblem(count));
    return problems.list();
  }
  let total = 0;
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(PREFIX)) continue;
    const value = annotations[key] ?? "";
    const keyBytes = utf8Bytes(key);
    const valueBytes = typeof value === "string" ? utf8Bytes(value) : 0;
    total += keyBytes + valueBytes;
    if (keyBytes > MAX_ANNOTATION_KEY_BYTES) {
      problems.push(
        `annotation key ${quote(key)} is ${formatCount(keyBytes)} bytes; the limit is ${MAX_ANNOTATION_KEY_BYTES} (Kubernetes allows 63 characters after ${PREFIX}): use one of the keys the README lists`,
      );
    }
    if (valueBytes > MAX_ANNOTATION_VALUE_BYTES) {
      problems.push(
        `${shownKey(key)} is ${formatCount(valueBytes)} bytes; the limit is ${formatSize(MAX_ANNOTATION_VALUE_BYTES)} per ${PREFIX} annotation: list fewer entries or keys in it, or read a JSON secret whole with env-from`,
      );
    }
  }
  if (total > MAX_ANNOTATIONS_TOTAL_BYTES) {
    problems.push(
      `the pod's ${PREFIX} annotations are ${formatCount(total)} bytes together; the limit is ${formatSize(MAX_ANNOTATIONS_TOTAL_BYTES)} (the compiled spec must fit in one environment variable of the init container): reference fewer secrets or keys`,
    );
  }
  return problems.list();
}

function annotationCountProblem(count: number): string {
  return `the pod has ${formatCount(count)} ${PREFIX} annotations; the limit is ${formatCount(MAX_ANNOTATION_COUNT)} (the init container takes at most ${MAX_FETCH_ENTRIES} entries): use the structured form ${annotationName(FIXED_KEYS.secrets)} or JSON secrets read with env-from`;
}

/**
 * One entry as read from its annotation, before regions are resolved: `refs` are the secret ids
 * it names, in the order of entrySources(entry) (one, or each placeholder of a template).
 */
type Draft = {
  annotation: string;
  entry: FetchEntry;
  refs: readonly ParsedSecretId[];
  explicitRegion?: string;
};
type FixedValues = Partial<Record<FixedAnnotation, string>>;

/** A template as written (one-line or structured), measured and parsed after every other entry is read. */
type PendingTemplate = {
  /** The annotation (or structured entry) that owns the variable. */
  annotation: string;
  /** What messages about the text name: the annotation, or the entry's `.template` field. */
  field: string;
  env: string;
  text: string;
  explicitRegion?: string;
};

/** What the per-key stage reads: entries (drafts), templates still to parse, and the settings. */
interface ReadAnnotations {
  drafts: Draft[];
  templates: PendingTemplate[];
  fixed: FixedValues;
}

/** The settings of the output and the init container, each from its annotation or the default. */
interface Settings {
  format: OutputFormat;
  outputDir: string;
  fileName: string;
  fileMode: FileModeSetting;
  targets: string[];
  wrap: string[];
  initPosition: "first" | "last";
  timeoutSeconds: number;
}

/**
 * Parses and validates a pod's sm-injector annotations against the pod and the operator's config,
 * in stages: limits (before any parsing) → per-key parse (entries, templates, settings) →
 * cross-field checks (regions, variables, counts, the pod's own volumes and mounts) → warnings.
 */
export function compileInjectionSpec(pod: V1Pod, config: InjectorConfig): CompileResult {
  const annotations = pod.metadata?.annotations ?? {};
  const overLimits = checkAnnotationLimits(annotations);
  if (overLimits.length > 0)
    return { ok: false, errors: overLimits, warnings: [], problemCount: overLimits.length, overLimits: true };

  const errors = new ProblemList();
  const warnings: string[] = [];
  const read = readAnnotations(annotations, errors);
  const drafts = readEntries(read, errors);
  const settings = readSettings(pod, read.fixed, config, errors, warnings);
  const targetSet = new Set(settings.targets);
  const targeted = podContainers(pod).filter((c) => targetSet.has(c.name));
  const { entries, variables } = checkEntries(drafts, read.fixed.region, targeted, settings, config, errors);
  errors.push(...checkPodFit(pod, targeted, settings.outputDir));
  warnings.push(...suspiciousInput(drafts, variables, targeted), ...ownPathWarnings(targeted));

  if (errors.length > 0) return { ok: false, errors: errors.list(), warnings, problemCount: errors.length };
  return { ok: true, warnings, spec: injectionSpec(entries, variables, settings) };
}

function injectionSpec(entries: FetchEntry[], variables: string[], s: Settings): InjectionSpec {
  const secretIds = new Set<string>();
  for (const e of entries) for (const src of entrySources(e)) secretIds.add(src.secretId);
  return {
    entries,
    format: s.format,
    outputDir: s.outputDir,
    fileName: s.fileName,
    fileMode: s.fileMode,
    targets: s.targets,
    wrap: s.wrap,
    initPosition: s.initPosition,
    timeoutSeconds: s.timeoutSeconds,
    variables,
    secretIds: [...secretIds],
  };
}

/** Every entry: the one-line forms, then the structured form, then the templates of both. */
function readEntries(read: ReadAnnotations, errors: ProblemList): Draft[] {
  const drafts = read.drafts;
  const templates = read.templates;
  if (read.fixed.secrets !== undefined) {
    const structured = readStructured(read.fixed.secrets, errors);
    drafts.push(...structured.drafts);
    templates.push(...structured.templates);
  }
  drafts.push(...readTemplates(templates, drafts.length, errors));
  return drafts;
}

/** Stage 1, per key: the one-line forms become drafts or pending templates; settings are kept for later. */
function readAnnotations(
  annotations: Readonly<Record<string, string>>,
  errors: ProblemList,
): ReadAnnotations {
  const read: ReadAnnotations = { drafts: [], templates: [], fixed: {} };
  for (const [fullKey, value] of Object.entries(annotations)) {
    if (!fullKey.startsWith(PREFIX)) continue;
    const key = fullKey.slice(PREFIX.length);
    if (fullKey === STATUS_ANNOTATION) continue;
    const known = annotationOf(key);
    if (known === undefined) {
      errors.push(`${shownKey(fullKey)}: unknown sm-injector annotation.${suggestKey(key)}`);
      continue;
    }
    if (known.name === "env" || known.name === "template") {
      if (!ENV_NAME_PATTERN.test(known.suffix)) {
        errors.push(
          `${shownKey(fullKey)}: ${quote(known.suffix)} is not a valid environment variable name; use letters, digits and _, not starting with a digit (e.g. ${PREFIX}${known.name}.DB_PASSWORD)`,
        );
      } else if (known.name === "template") {
        const annotation = shownKey(fullKey);
        read.templates.push({ annotation, field: annotation, env: known.suffix, text: value });
      } else pushDraft(read.drafts, oneLineDraft(shownKey(fullKey), value, known.suffix), errors);
    } else if (known.name === "envFrom") {
      pushDraft(read.drafts, oneLineDraft(shownKey(fullKey), value, undefined), errors);
    } else read.fixed[known.name] = value;
  }
  return read;
}

function pushDraft(drafts: Draft[], d: Draft | { error: string }, errors: ProblemList): void {
  if ("error" in d) errors.push(d.error);
  else drafts.push(d);
}

/** `env.<VAR>` (variable given) or `env-from` (variable undefined): one reference. */
function oneLineDraft(
  annotation: string,
  value: string,
  variable: string | undefined,
): Draft | { error: string } {
  const ref = parseReference(value, { expand: variable === undefined });
  if (!ref.ok) return { error: `${annotation}: ${ref.error}` };
  const r = ref.value;
  const entry: FetchEntry =
    variable !== undefined
      ? valueEntry(source(r), variable, r.key, r.optional)
      : { kind: "expand", source: source(r), prefix: r.prefix ?? "", rename: {}, optional: r.optional };
  return { annotation, refs: [r], entry };
}

/**
 * Templates are measured before any is parsed: each within its own limits, and all their
 * placeholders together with the other entries within what the init container takes.
 */
function readTemplates(
  pending: readonly PendingTemplate[],
  otherEntries: number,
  errors: ProblemList,
): Draft[] {
  let references = otherEntries;
  const overLimits = pending.map((t) => {
    const problem = templateLimitProblem(t.text);
    if (problem === undefined) references += countPlaceholders(t.text);
    return problem;
  });
  // Over the limit without templates: the entry count's own message says so (checkEntryCounts).
  const overTotal = references > MAX_FETCH_ENTRIES && otherEntries <= MAX_FETCH_ENTRIES;
  const drafts: Draft[] = [];
  pending.forEach((t, i) => {
    const problem = overLimits[i];
    if (problem !== undefined) errors.push(`${t.field}: ${problem}`);
    else if (!overTotal) pushDraft(drafts, templateDraft(t), errors);
  });
  if (overTotal)
    errors.push(
      `the pod's entries and template placeholders name ${formatCount(references)} secret references; the init container takes at most ${MAX_FETCH_ENTRIES}: compose fewer values, or combine them into JSON secrets`,
    );
  return drafts;
}

function templateDraft(t: PendingTemplate): Draft | { error: string } {
  const parsed = parseTemplate(t.text);
  if (!parsed.ok) return { error: `${t.field}: ${parsed.error}` };
  const refs: ParsedReference[] = [];
  const parts: TemplateEntry["parts"] = parsed.value.map((p) => {
    if (typeof p === "string") return p;
    refs.push(p.ref);
    return templateReference(p.ref, p.filter);
  });
  const entry: FetchEntry = { kind: "template", env: t.env, parts };
  return t.explicitRegion === undefined
    ? { annotation: t.annotation, refs, entry }
    : { annotation: t.annotation, refs, entry, explicitRegion: t.explicitRegion };
}

function templateReference(r: ParsedReference, filter: TemplateFilter | undefined): TemplateReference {
  const ref: TemplateReference = { source: source(r) };
  if (r.key !== undefined) ref.key = r.key;
  if (filter !== undefined) ref.filter = filter;
  return ref;
}

/** The pod's regular containers, then its init containers: what `containers` may name. */
export function podContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
}

/** Stage 1, settings: each from its annotation, else the operator's default; in the order users read them. */
function readSettings(
  pod: V1Pod,
  fixed: FixedValues,
  config: InjectorConfig,
  errors: ProblemList,
  warnings: string[],
): Settings {
  const format = readFormat(fixed.format, config, errors);
  const outputDir = readOutputDir(fixed.outputDir, config, errors);
  const fileName = readFileName(fixed.fileName, format, errors, warnings);
  const fileMode = readFileMode(fixed.fileMode, errors);
  const targets = readTargets(pod, fixed.containers, errors);
  const wrap = readWrap(pod, fixed.wrapCommand, new Set(targets), format, `${outputDir}/${fileName}`, errors);
  checkRestartOnRotation(fixed.restartOnRotation, errors);
  const initPosition = readInitPosition(pod, fixed.initPosition, targets, errors);
  const timeoutSeconds = readTimeout(fixed.timeout, config, errors);
  return { format, outputDir, fileName, fileMode, targets, wrap, initPosition, timeoutSeconds };
}

function readFormat(value: string | undefined, config: InjectorConfig, errors: ProblemList): OutputFormat {
  if (value === undefined) return config.defaultFormat;
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  errors.push(
    `${annotationName(FIXED_KEYS.format)}: ${quote(value)} is not a format; use one of ${OUTPUT_FORMATS.join(", ")}`,
  );
  return config.defaultFormat;
}

function readOutputDir(value: string | undefined, config: InjectorConfig, errors: ProblemList): string {
  if (value === undefined) return config.defaultOutputDir;
  const e = checkOutputDir(value, config.allowedOutputRoots);
  if (e === undefined) return value;
  errors.push(`${annotationName(FIXED_KEYS.outputDir)}: ${e}`);
  return config.defaultOutputDir;
}

function readFileName(
  value: string | undefined,
  format: OutputFormat,
  errors: ProblemList,
  warnings: string[],
): string {
  const byDefault = format === "json" ? "env.json" : "env";
  if (value === undefined) return byDefault;
  if (format === "files") {
    warnings.push(
      `${annotationName(FIXED_KEYS.fileName)} is ignored with format files (each variable is its own file)`,
    );
    return byDefault;
  }
  if (!/^[A-Za-z0-9._-]{1,255}$/.test(value) || value === "." || value === "..") {
    errors.push(
      `${annotationName(FIXED_KEYS.fileName)}: ${quote(value)} is not a plain file name (letters, digits, . _ -; no slashes)`,
    );
    return byDefault;
  }
  return value;
}

/** Read by `sm-injector rotation` from the pod; checked here so that a typo is refused at apply time. */
function checkRestartOnRotation(value: string | undefined, errors: ProblemList): void {
  if (value === undefined) return;
  const v = value.trim();
  if (v !== "true" && v !== "false")
    errors.push(
      `${annotationName(FIXED_KEYS.restartOnRotation)}: ${quote(v)} is not allowed; use "true" or "false"`,
    );
}

/**
 * Where the fetch runs among the init containers: `first`, or `last` — which, when init containers
 * read the secrets too, means just before the first of them (so mesh and network init containers
 * still run first). Written out, `last` with a targeted init container is refused: it would run after
 * a container that needs its file.
 */
function readInitPosition(
  pod: V1Pod,
  value: string | undefined,
  targets: readonly string[],
  errors: ProblemList,
): "first" | "last" {
  if (value === undefined) return "last";
  const v = value.trim();
  if (v !== "first" && v !== "last") {
    errors.push(`${annotationName(FIXED_KEYS.initPosition)}: ${quote(v)} is not allowed; use first or last`);
    return "last";
  }
  const firstInitTarget = (pod.spec?.initContainers ?? []).find((c) => targets.includes(c.name));
  if (v === "last" && firstInitTarget)
    errors.push(
      `${annotationName(FIXED_KEYS.initPosition)}: last runs the fetch after every init container, but the init container ${quote(firstInitTarget.name)} reads the secrets (${annotationName(FIXED_KEYS.containers)}); remove ${annotationName(FIXED_KEYS.initPosition)} to run the fetch just before it, or use first`,
    );
  return v;
}

function readTimeout(value: string | undefined, config: InjectorConfig, errors: ProblemList): number {
  if (value === undefined) return config.defaultTimeoutSeconds;
  const n = Number(value.trim());
  if (Number.isInteger(n) && n >= 1 && n <= config.maxTimeoutSeconds) return n;
  errors.push(
    `${annotationName(FIXED_KEYS.timeout)}: ${quote(value)} must be a whole number of seconds from 1 to ${config.maxTimeoutSeconds}`,
  );
  return config.defaultTimeoutSeconds;
}

/** Stage 2, the entries against each other and the pod: regions, variable names, counts. */
function checkEntries(
  drafts: readonly Draft[],
  regionAnnotation: string | undefined,
  targeted: readonly V1Container[],
  settings: Settings,
  config: InjectorConfig,
  errors: ProblemList,
): { entries: FetchEntry[]; variables: string[] } {
  errors.push(...checkContainerRegions(targeted));
  const firstTarget = targeted.find((c) => c.name === settings.targets[0]);
  const entries = resolveRegions(drafts, regionAnnotation, firstTarget, config, errors);
  const { variables, owners } = claimVariables(drafts, errors);
  checkEntryCounts(drafts, entries, config, errors);
  if (settings.format === "shell") {
    // The encoder's own list: what admission refuses here, the init container refuses for env-from keys.
    for (const v of variables) {
      const why = shellRefusal(v);
      if (why !== undefined)
        errors.push(
          `${owners.get(v)}: ${v} cannot be set by sourcing the env file (${why}); choose another variable name`,
        );
    }
  }
  return { entries, variables };
}

function checkEntryCounts(
  drafts: readonly Draft[],
  entries: readonly FetchEntry[],
  config: InjectorConfig,
  errors: ProblemList,
): void {
  if (drafts.length === 0 && errors.length === 0) {
    errors.push(
      `the pod has the label ${PREFIX}inject=true but no secrets to fetch; add e.g. ${PREFIX}env.DATABASE_URL: erp/production/database#DATABASE_URL, or remove the label`,
    );
  }
  if (drafts.length > MAX_FETCH_ENTRIES) {
    errors.push(
      `the pod asks for ${formatCount(drafts.length)} entries (one per variable or expanded secret); the init container takes at most ${MAX_FETCH_ENTRIES}: combine values into JSON secrets and read them with env-from`,
    );
  }
  // There are never more distinct sources than references, so count them only when that could matter.
  let references = 0;
  for (const e of entries) references += e.kind === "template" ? templateReferences(e).length : 1;
  if (references > config.maxSecrets) {
    const distinct = new Set(entries.flatMap((e) => entrySources(e).map(sourceKey)));
    if (distinct.size > config.maxSecrets) {
      errors.push(
        `the pod references ${distinct.size} distinct secrets; this webhook allows at most ${config.maxSecrets} per pod (combine values into JSON secrets)`,
      );
    }
  }
}

/** Stage 2, the pod: sm-injector's volume and mount must fit beside the pod's own. */
function checkPodFit(pod: V1Pod, targeted: readonly V1Container[], outputDir: string): string[] {
  const problems = checkReservedVolumes(pod);
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  const dir = canonicalPath(outputDir);
  for (const c of targeted)
    if (c.volumeMounts?.length) problems.push(...checkMounts(c, outputDir, dir, volumes));
  return problems;
}

/** The structured form: its value is already within the size limit, so parsing it is bounded. */
function readStructured(
  text: string,
  errors: ProblemList,
): { drafts: Draft[]; templates: PendingTemplate[] } {
  const none = { drafts: [], templates: [] };
  const name = annotationName(FIXED_KEYS.secrets);
  let doc: unknown = parseSimpleYamlList(text);
  if (doc === undefined) {
    const tooCostly = checkYamlCost(text);
    if (tooCostly) {
      errors.push(`${name} ${tooCostly}`);
      return none;
    }
    try {
      doc = parseYaml(text, { maxAliasCount: 0, prettyErrors: false });
    } catch (e) {
      const first = ((e as Error).message ?? "").split("\n")[0] ?? "";
      errors.push(
        `${name}: is not valid YAML or JSON (${first.length > 200 ? `${first.slice(0, 199)}…` : first})`,
      );
      return none;
    }
  }
  const overLimits = checkStructuredLimits(doc);
  if (overLimits.length > 0) {
    errors.push(...overLimits.map((p) => `${name}${p}`));
    return none;
  }
  const parsed = StructuredSchema.safeParse(doc);
  if (!parsed.success) {
    errors.push(...formatZodIssues(name, parsed.error));
    return none;
  }
  const drafts: Draft[] = [];
  const templates: PendingTemplate[] = [];
  parsed.data.forEach((item, i) => {
    const where = `${name}[${i}]`;
    const d = item.template !== undefined ? structuredTemplate(where, item) : structuredEntry(where, item);
    if ("error" in d) errors.push(...d.error);
    else if ("text" in d) templates.push(d);
    else drafts.push(d);
  });
  return { drafts, templates };
}

/** Why `text` is too costly for the general YAML parser, if it is. */
function checkYamlCost(text: string): string | undefined {
  const bytes = utf8Bytes(text);
  if (bytes > MAX_YAML_BYTES)
    return `is ${formatCount(bytes)} bytes; the limit is ${formatSize(MAX_YAML_BYTES)} unless it is in the plain form (each line "- field: value" or "  field: value", unquoted, no flow lists or comments), which may take up to ${formatSize(MAX_ANNOTATION_VALUE_BYTES)}: write it that way, or move entries to one-line annotations`;
  let depth = 0;
  let indent = 0;
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      lineStart = true;
      indent = 0;
      continue;
    }
    if (lineStart) {
      // Spaces, tabs and the block indicators - ? : before a line's content.
      if (c === 0x20 || c === 0x09 || c === 0x2d || c === 0x3f || c === 0x3a) {
        if (++indent > MAX_YAML_INDENT)
          return `indents or nests a line more than ${MAX_YAML_INDENT} characters deep; an entry needs about 8`;
        continue;
      }
      lineStart = false;
    }
    if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_YAML_NESTING)
        return `nests [ and { more than ${MAX_YAML_NESTING} deep; an entry needs at most 3 (list, entry, keys or rename)`;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return undefined;
}

function readFileMode(value: string | undefined, errors: ProblemList): FileModeSetting {
  if (value === undefined) return "auto";
  const modes: Record<string, FileModeSetting> = {
    auto: "auto",
    "0400": 0o400,
    "0440": 0o440,
    "0444": 0o444,
    "400": 0o400,
    "440": 0o440,
    "444": 0o444,
  };
  const m = Object.hasOwn(modes, value.trim()) ? modes[value.trim()] : undefined;
  if (m !== undefined) return m;
  errors.push(
    `${annotationName(FIXED_KEYS.fileMode)}: ${quote(value)} is not allowed; use auto, "0400", "0440" or "0444" (quoted in YAML)`,
  );
  return "auto";
}

/**
 * The containers that read the secrets: every regular container by default, else those listed —
 * init containers (a migration, a native sidecar) included; the fetch then runs before them (see
 * readInitPosition).
 */
function readTargets(pod: V1Pod, value: string | undefined, errors: ProblemList): string[] {
  const names = (pod.spec?.containers ?? []).map((c) => c.name);
  if (value === undefined) return names;
  const initNames = (pod.spec?.initContainers ?? []).map((c) => c.name);
  const known = new Set([...names, ...initNames]);
  const listed = splitList(value);
  const key = annotationName(FIXED_KEYS.containers);
  for (const n of listed) {
    if (known.has(n)) continue;
    const inits = initNames.length > 0 ? `; init containers: ${listNames(initNames)}` : "";
    errors.push(
      `${key}: the pod has no container ${quote(n)} (containers: ${listNames(names) || "none"}${inits})`,
    );
  }
  if (listed.length === 0) errors.push(`${key}: lists no container; remove it to target all containers`);
  return listed.filter((n) => known.has(n));
}

/** Targeted containers whose command gets wrapped. */
function readWrap(
  pod: V1Pod,
  value: string | undefined,
  targets: ReadonlySet<string>,
  format: OutputFormat,
  file: string,
  errors: ProblemList,
): string[] {
  if (value === undefined) return [];
  const key = annotationName(FIXED_KEYS.wrapCommand);
  const byName = new Map(podContainers(pod).map((c) => [c.name, c]));
  const v = value.trim();
  const listed = v === "true" ? [...targets] : v === "false" ? [] : splitList(v);
  const wrap: string[] = [];
  for (const n of listed) {
    const c = byName.get(n);
    if (!c) {
      errors.push(`${key}: the pod has no container ${quote(n)}; use "true", "false" or container names`);
    } else if (!targets.has(n)) {
      errors.push(
        `${key}: container ${quote(n)} is not targeted by ${annotationName(FIXED_KEYS.containers)}`,
      );
    } else if (!c.command || c.command.length === 0) {
      errors.push(
        `${key}: container ${quote(n)} has no explicit command, so its image entrypoint is unknown to the webhook (sm-injector never looks images up in registries). Set the container's command to the image's entrypoint, e.g. command: ["uvicorn"] with args: ["app.main:app"], or source ${file} in your own entrypoint.`,
      );
    } else wrap.push(n);
  }
  if (listed.length > 0 && format !== "shell") {
    errors.push(
      `${key}: needs format shell (the wrapper sources the file with /bin/sh); the pod uses ${format}`,
    );
    return [];
  }
  return wrap;
}

/**
 * sm-injector passes the targeted containers' own AWS_REGION / AWS_DEFAULT_REGION to its init
 * container, and uses the first one's as the region of secrets given by name: a value that is not
 * a region would only fail at pod start (or reach a URL), so it is refused here.
 */
function checkContainerRegions(targeted: readonly V1Container[]): string[] {
  const problems: string[] = [];
  for (const c of targeted) {
    for (const { name, value } of literalRegionEnv(c)) {
      if (!REGION_PATTERN.test(value)) {
        problems.push(
          `container ${c.name} sets ${name} to ${quote(value)}, which is not an AWS region (e.g. eu-west-1); sm-injector passes it to its init container and uses it for secrets given by name: fix the value, or set the region with ${annotationName(FIXED_KEYS.region)} and remove ${name}`,
        );
      }
    }
  }
  return problems;
}

/** Regions: ARN > per-entry > annotation > the first target's AWS_REGION > webhook default. */
function resolveRegions(
  drafts: readonly Draft[],
  regionAnnotation: string | undefined,
  firstTarget: V1Container | undefined,
  config: InjectorConfig,
  errors: ProblemList,
): FetchEntry[] {
  let podRegion: string | undefined;
  if (regionAnnotation !== undefined) {
    if (!REGION_PATTERN.test(regionAnnotation.trim())) {
      errors.push(
        `${annotationName(FIXED_KEYS.region)}: ${quote(regionAnnotation)} is not an AWS region (e.g. eu-west-1)`,
      );
    } else podRegion = regionAnnotation.trim();
  }
  const envRegion = effectiveEnvRegion(firstTarget);
  // A container region that is not a region is refused by checkContainerRegions, and never used.
  const usableEnvRegion = envRegion !== undefined && REGION_PATTERN.test(envRegion) ? envRegion : undefined;
  const fallbackRegion =
    podRegion ?? usableEnvRegion ?? (envRegion === undefined ? config.defaultRegion : undefined);
  const entries: FetchEntry[] = [];
  for (const d of drafts) {
    const regions = draftRegions(d, fallbackRegion, envRegion === undefined, errors);
    if (regions !== undefined) entries.push(withRegions(d.entry, regions));
  }
  return entries;
}

/** The region of each of a draft's references, or undefined (and the problem) when one has none. */
function draftRegions(
  d: Draft,
  fallbackRegion: string | undefined,
  reportMissing: boolean,
  errors: ProblemList,
): string[] | undefined {
  const regions: string[] = [];
  const reported = new Set<string>(); // a template may name one secret many times: one problem
  for (const ref of d.refs) {
    const region = ref.arnRegion ?? d.explicitRegion ?? fallbackRegion;
    const problem =
      ref.arnRegion && d.explicitRegion && ref.arnRegion !== d.explicitRegion
        ? `${d.annotation}: region ${d.explicitRegion} contradicts the ARN's region ${ref.arnRegion}; remove region`
        : region === undefined && reportMissing
          ? `${d.annotation}: no AWS region for ${quote(ref.secretId)}; set ${annotationName(FIXED_KEYS.region)}, AWS_REGION in the container's env, use an ARN, or configure the webhook's default region`
          : undefined;
    if (problem !== undefined && !reported.has(problem)) {
      reported.add(problem);
      errors.push(problem);
    }
    if (region !== undefined) regions.push(region);
  }
  return regions.length === d.refs.length ? regions : undefined;
}

/** Variable names must be unique across every form. */
function claimVariables(
  drafts: readonly Draft[],
  errors: ProblemList,
): { variables: string[]; owners: Map<string, string> } {
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
    if (d.entry.kind !== "expand") claim(d.entry.env, d.annotation);
    else {
      for (const v of Object.values(d.entry.rename)) claim(v, d.annotation);
      if (d.entry.keys) {
        for (const k of d.entry.keys) {
          if (d.entry.rename[k] === undefined) {
            const v = d.entry.prefix + k;
            if (ENV_NAME_PATTERN.test(v)) claim(v, d.annotation);
            else
              errors.push(
                `${d.annotation}: key ${quote(k)} would become ${quote(v)}, which is not a valid variable name; add a rename for it`,
              );
          }
        }
      }
      if (d.entry.prefix !== "" && !ENV_NAME_PATTERN.test(d.entry.prefix)) {
        errors.push(
          `${d.annotation}: prefix ${quote(d.entry.prefix)} must be letters, digits and _ and not start with a digit`,
        );
      }
    }
  }
  return { variables, owners };
}

/** Warnings: legal but suspicious. */
function suspiciousInput(
  drafts: readonly Draft[],
  variables: readonly string[],
  targeted: readonly V1Container[],
): string[] {
  const warnings = new ProblemList("warning");
  // Which targeted containers set each variable: one pass over their env, whatever its size.
  const wanted = new Set(variables);
  const setBy = new Map<string, string[]>();
  for (const c of targeted) {
    for (const e of c.env ?? []) {
      if (!wanted.has(e.name)) continue;
      const list = setBy.get(e.name) ?? [];
      if (list.at(-1) !== c.name) list.push(c.name);
      setBy.set(e.name, list);
    }
  }
  for (const v of variables) {
    if (RISKY_VARIABLES.has(v))
      warnings.push(
        `variable ${v} from Secrets Manager will override the container's own ${v} when the file is sourced`,
      );
    else if (v.startsWith("AWS_"))
      warnings.push(`variable ${v} may change the AWS credentials or region the app uses`);
    for (const c of setBy.get(v) ?? []) {
      warnings.push(
        `container ${c} also sets ${v} in its env; the value from Secrets Manager wins where the file is sourced`,
      );
    }
  }
  for (const d of drafts) {
    const names = new Set(d.refs.filter((r) => !r.secretId.startsWith("arn:")).map((r) => r.name));
    for (const name of names) {
      if (/-[A-Za-z0-9]{6}$/.test(name))
        warnings.push(
          `${d.annotation}: "${name}" ends with a hyphen and six characters, which Secrets Manager may read as an ARN suffix; prefer a full ARN or another name`,
        );
    }
    if (entrySources(d.entry).some((s) => s.versionStage === "AWSPENDING")) {
      warnings.push(
        `${d.annotation}: versionStage AWSPENDING is a rotation in progress; pods normally want AWSCURRENT`,
      );
    }
  }
  return warnings.list();
}

/** Containers that set sm-injector's own path variables keep their value. */
function ownPathWarnings(targeted: readonly V1Container[]): string[] {
  const warnings: string[] = [];
  for (const c of targeted) {
    if ((c.env ?? []).some((e) => e.name === ENV_FILE_VAR || e.name === SECRETS_DIR_VAR)) {
      warnings.push(
        `container ${c.name} sets ${ENV_FILE_VAR}/${SECRETS_DIR_VAR} itself; sm-injector leaves it as is`,
      );
    }
  }
  return warnings;
}

/**
 * sm-injector adds volumes named sm-injector-secrets and sm-injector-aws-iam-token. A pod that
 * already has one would be rejected by the API server with a message that is not ours; a container
 * that mounts one (with no such volume in the pod) would be handed sm-injector's volume, secrets
 * included, without being targeted.
 */
function checkReservedVolumes(pod: V1Pod): string[] {
  const problems: string[] = [];
  const reserved = new Set(RESERVED_VOLUME_NAMES);
  for (const v of pod.spec?.volumes ?? []) {
    if (reserved.has(v.name))
      problems.push(
        `the pod already has a volume named ${v.name}, a name sm-injector reserves for the volume it adds: rename the pod's volume`,
      );
  }
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const m of c.volumeMounts ?? []) {
      if (reserved.has(m.name))
        problems.push(
          `container ${c.name} mounts a volume named ${m.name}, a name sm-injector reserves for the volume it adds (the container would be given sm-injector's volume): rename it`,
        );
    }
  }
  return problems;
}

/**
 * sm-injector mounts its read-only volume at output-dir in every targeted container. A container's
 * own mount at or under output-dir cannot be made inside it; a read-only mount above it has no room
 * for the mount point. (A writable mount above it, e.g. an emptyDir at /run, is fine: the runtime
 * mounts parents first and creates the mount point inside it.)
 */
function checkMounts(
  c: V1Container,
  outputDir: string,
  dir: string,
  volumes: ReadonlyMap<string, V1Volume>,
): string[] {
  const problems: string[] = [];
  const key = annotationName(FIXED_KEYS.outputDir);
  for (const m of c.volumeMounts ?? []) {
    if (typeof m.mountPath !== "string") continue;
    const path = canonicalPath(m.mountPath);
    if (path === dir) {
      problems.push(`container ${c.name} already mounts ${m.name} at ${outputDir}; choose another ${key}`);
    } else if (path.startsWith(`${dir}/`)) {
      problems.push(
        `container ${c.name} mounts ${m.name} at ${quote(m.mountPath)}, inside ${outputDir} where sm-injector mounts its read-only volume; choose another ${key}`,
      );
    } else if (dir.startsWith(`${path}/`) && isReadOnlyMount(m, volumes.get(m.name))) {
      problems.push(
        `container ${c.name} mounts ${m.name} read-only at ${quote(m.mountPath)}, above ${outputDir}, so there is no room for sm-injector's mount point; choose a ${key} outside it`,
      );
    }
  }
  return problems;
}

function isReadOnlyMount(m: { readOnly?: boolean }, volume: V1Volume | undefined): boolean {
  if (m.readOnly === true) return true;
  return volume !== undefined && READ_ONLY_VOLUME_TYPES.some((t) => volume[t] !== undefined);
}

/** A path as the runtime resolves it: no repeated or trailing slashes, /var/run read as /run (a symlink in most images). */
function canonicalPath(p: string): string {
  const plain =
    p.startsWith("/") && !p.endsWith("/") && !p.includes("//") && !p.includes("/./") && !p.endsWith("/.");
  const clean = plain
    ? p
    : `/${p
        .split("/")
        .filter((s) => s !== "" && s !== ".")
        .join("/")}`;
  return sameDirUnderRun(clean);
}

function sameDirUnderRun(p: string): string {
  return p === "/var/run" || p.startsWith("/var/run/") ? p.slice("/var".length) : p;
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

/** The source with its region set (sources are built without one). */
function withRegion(s: SecretSource, region: string): SecretSource {
  if (s.region !== undefined) return { ...s, region };
  if (s.versionStage === undefined && s.versionId === undefined) return { secretId: s.secretId, region };
  // Not `{ ...s, region }`: a spread copy that gains a key is slow on Node 20 (see withFields).
  const src = source(s);
  src.region = region;
  return src;
}

/** The entry with each of its sources' region set, in the order of entrySources. */
function withRegions(e: FetchEntry, regions: readonly string[]): FetchEntry {
  if (e.kind === "value")
    return valueEntry(withRegion(e.source, regions[0] as string), e.env, e.key, e.optional);
  if (e.kind === "expand") return { ...e, source: withRegion(e.source, regions[0] as string) };
  let i = 0;
  const parts = e.parts.map((p) =>
    typeof p === "string" ? p : { ...p, source: withRegion(p.source, regions[i++] as string) },
  );
  return { ...e, parts };
}

function splitList(v: string): string[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function structuredEntry(where: string, item: StructuredEntry): Draft | { error: string[] } {
  const errs: string[] = [];
  if (item.secret === undefined) return { error: [`${where}.secret: ${SECRET_REQUIRED}`] };
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
    errs.push(`${where}.region: ${quote(item.region)} is not an AWS region (e.g. eu-west-1)`);
  if (item.env !== undefined) {
    if (!ENV_NAME_PATTERN.test(item.env))
      errs.push(
        `${where}.env: ${quote(item.env)} is not a valid environment variable name (letters, digits, _; not starting with a digit)`,
      );
    for (const f of ["prefix", "keys", "rename"] as const) {
      if (item[f] !== undefined)
        errs.push(
          `${where}: ${f} expands a JSON secret into many variables and cannot be combined with env; use key to pick one value`,
        );
    }
  } else {
    if (item.key !== undefined)
      errs.push(`${where}: key ${quote(item.key)} needs env, the variable to put it in`);
    const listed = item.keys && new Set(item.keys);
    for (const [k, v] of Object.entries(item.rename ?? {})) {
      if (!ENV_NAME_PATTERN.test(v))
        errs.push(`${where}.rename.${quotedField(k)}: ${quote(v)} is not a valid environment variable name`);
      if (listed && !listed.has(k))
        errs.push(`${where}.rename.${quotedField(k)}: renames a key that keys does not list`);
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
    refs: [id.value],
    ...(item.region !== undefined && { explicitRegion: item.region }),
  };
}

/** The fields a template entry cannot have: what they say goes inside its placeholders. */
const NOT_WITH_TEMPLATE = [
  "secret",
  "key",
  "prefix",
  "keys",
  "rename",
  "versionStage",
  "versionId",
  "optional",
] as const;

/** `{env, template, region?}`: measured and parsed later, with the one-line templates. */
function structuredTemplate(where: string, item: StructuredEntry): PendingTemplate | { error: string[] } {
  const errs: string[] = [];
  const extra = NOT_WITH_TEMPLATE.filter((f) => item[f] !== undefined);
  if (extra.length > 0)
    errs.push(
      `${where}: template cannot be combined with ${extra.join(", ")}; each placeholder names its own secret, key and version (\${name#key?versionStage=S}), and a template is never optional`,
    );
  if (item.env === undefined) errs.push(`${where}: template needs env, the variable to put it in`);
  else if (!ENV_NAME_PATTERN.test(item.env))
    errs.push(
      `${where}.env: ${quote(item.env)} is not a valid environment variable name (letters, digits, _; not starting with a digit)`,
    );
  if (item.region !== undefined && !REGION_PATTERN.test(item.region))
    errs.push(`${where}.region: ${quote(item.region)} is not an AWS region (e.g. eu-west-1)`);
  if (errs.length > 0 || item.env === undefined || item.template === undefined) return { error: errs };
  const t: PendingTemplate = {
    annotation: where,
    field: `${where}.template`,
    env: item.env,
    text: item.template,
  };
  if (item.region !== undefined) t.explicitRegion = item.region;
  return t;
}

function checkOutputDir(dir: string, roots: readonly string[]): string | undefined {
  const notAbsolute = absoluteDirProblem(dir);
  if (notAbsolute !== undefined) return `${quote(dir)} ${notAbsolute}`;
  if (!roots.some((r) => dir.startsWith(`${r}/`))) {
    return `${quote(dir)} is outside the allowed roots (${roots.join(", ")}); choose a directory under one of them, e.g. /run/sm-injector`;
  }
  const overlaps = (p: string) => dir === p || dir.startsWith(`${p}/`) || p.startsWith(`${dir}/`);
  const hit = PROTECTED_PATHS.find(overlaps);
  if (hit)
    return `${quote(dir)} overlaps ${hit}, where Kubernetes or EKS mounts the pod's identity token; choose e.g. /run/sm-injector`;
  const own = OWN_MOUNT_PATHS.find(overlaps);
  if (own)
    return `${quote(dir)} overlaps ${own}, where sm-injector mounts the pod's identity token for its init container; choose e.g. /run/sm-injector`;
  return undefined;
}
