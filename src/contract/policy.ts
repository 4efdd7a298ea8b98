// Per-namespace secret policy: a platform team annotates a Namespace with the secrets its pods may
// reference, e.g. `sm-injector.io/allowed-secrets: "erp/production/*, erp/shared/*"`, and
// optionally the regions they may be read in (`sm-injector.io/allowed-regions: "eu-west-1"`).
// IAM stays the real guard; this refuses a wrong reference at `kubectl apply` time, with a clear
// message, instead of at pod start. Pure.
//
// Two kinds of pattern, because a reference names its account only when it is an ARN:
//   - a name pattern (`erp/production/*`) matches references by NAME only. A name is resolved by
//     Secrets Manager in the account of the credentials the pod fetches with (its IRSA role or Pod
//     Identity), so a name pattern never admits another account's secret.
//   - an ARN pattern (`arn:aws:secretsmanager:eu-west-1:123456789012:secret:erp/production/*`)
//     matches references by ARN, field by field, so it pins partition, region and account.
// A reference by ARN needs an ARN pattern: a name pattern does not admit it, whatever its name.
import {
  FIXED_KEYS,
  formatCount,
  MAX_POLICY_PATTERN_CHARS,
  MAX_POLICY_PATTERNS,
  PREFIX,
  ProblemList,
  quote,
} from "./annotations.ts";
import type { InjectionSpec } from "./compile.ts";
import { entrySources } from "./fetch-spec.ts";
import { REGION_PATTERN } from "./reference.ts";

export const NAMESPACE_POLICY_ANNOTATION = "sm-injector.io/allowed-secrets";
export const NAMESPACE_REGIONS_ANNOTATION = "sm-injector.io/allowed-regions";

export interface SecretPolicy {
  /** The allowed-secrets patterns as written; empty allows no secret. */
  readonly patterns: readonly string[];
  /** Regions a secret may be read in (allowed-regions); absent allows any. */
  readonly regions?: readonly string[];
  /**
   * Why the policy is invalid (too many or too long patterns, a malformed ARN pattern or region),
   * for the platform team: an invalid policy refuses every reference (fail closed). Never shown to
   * pods, since it would quote the policy.
   */
  readonly problems?: readonly string[];
  /** True when only allowed-regions is set: any secret, in the listed regions. */
  readonly anySecret?: boolean;
}

/**
 * Whether `text` matches `glob`, where `*` matches any run of characters and everything else is
 * literal. Linear: the literal segments are found in order with indexOf, leftmost first (which is
 * enough: a segment found further left leaves more room for the rest), never backtracking.
 */
export function globMatch(glob: string, text: string): boolean {
  const parts = glob.split("*");
  if (parts.length === 1) return glob === text;
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  if (text.length < first.length + last.length) return false;
  if (!text.startsWith(first) || !text.endsWith(last)) return false;
  let at = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    if (part === "") continue;
    const found = text.indexOf(part, at);
    if (found === -1 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

const ARN_FIELDS = ["arn", "partition", "service", "region", "account", "resource type", "name"] as const;

/** An ARN pattern's 7 fields, or why it is not one. */
function splitArnPattern(pattern: string): { fields: string[] } | { problem: string } {
  const fields = pattern.split(":");
  if (fields.length !== ARN_FIELDS.length)
    return {
      problem: `${quote(pattern)} is not an ARN pattern: it needs the 7 fields arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME (use * within a field)`,
    };
  if (fields[2] !== "secretsmanager" || fields[5] !== "secret")
    return {
      problem: `${quote(pattern)} is not a Secrets Manager secret ARN pattern (…:secretsmanager:…:secret:NAME)`,
    };
  if (!/^[0-9*]+$/.test(fields[4] as string))
    return { problem: `${quote(pattern)}: the account field must be 12 digits (or use *)` };
  return { fields };
}

function isArnPattern(pattern: string): boolean {
  return pattern.startsWith("arn:");
}

/** Parses the Namespace's policy annotations; undefined when neither is set (no restriction). */
export function parseSecretPolicy(
  value: string | undefined,
  regionsValue?: string | undefined,
): SecretPolicy | undefined {
  if (value === undefined && regionsValue === undefined) return undefined;
  const problems = new ProblemList();
  const patterns = splitList(value ?? "");
  if (patterns.length > MAX_POLICY_PATTERNS)
    problems.push(
      `${NAMESPACE_POLICY_ANNOTATION} lists ${formatCount(patterns.length)} patterns; the limit is ${MAX_POLICY_PATTERNS}`,
    );
  for (const p of patterns.slice(0, MAX_POLICY_PATTERNS)) {
    if (p.length > MAX_POLICY_PATTERN_CHARS)
      problems.push(
        `${NAMESPACE_POLICY_ANNOTATION}: a pattern is ${formatCount(p.length)} characters; the limit is ${MAX_POLICY_PATTERN_CHARS}`,
      );
    else if (isArnPattern(p)) {
      const arn = splitArnPattern(p);
      if ("problem" in arn) problems.push(`${NAMESPACE_POLICY_ANNOTATION}: ${arn.problem}`);
    } else if (p.includes(":"))
      problems.push(
        `${NAMESPACE_POLICY_ANNOTATION}: ${quote(p)} is neither a secret name pattern (names cannot contain ":") nor an ARN pattern (arn:…)`,
      );
  }
  let regions: string[] | undefined;
  if (regionsValue !== undefined) {
    regions = splitList(regionsValue);
    if (regions.length > MAX_POLICY_PATTERNS)
      problems.push(
        `${NAMESPACE_REGIONS_ANNOTATION} lists ${formatCount(regions.length)} regions; the limit is ${MAX_POLICY_PATTERNS}`,
      );
    for (const r of regions.slice(0, MAX_POLICY_PATTERNS)) {
      if (!REGION_PATTERN.test(r))
        problems.push(`${NAMESPACE_REGIONS_ANNOTATION}: ${quote(r)} is not an AWS region (e.g. eu-west-1)`);
    }
  }
  return {
    patterns,
    ...(regions !== undefined && { regions }),
    problems: problems.list(),
    ...(value === undefined && { anySecret: true }),
  };
}

/** The policy from a Namespace's annotations (both allowed-secrets and allowed-regions). */
export function namespacePolicy(
  annotations: Readonly<Record<string, string>> | undefined,
): SecretPolicy | undefined {
  return parseSecretPolicy(
    annotations?.[NAMESPACE_POLICY_ANNOTATION],
    annotations?.[NAMESPACE_REGIONS_ANNOTATION],
  );
}

function splitList(value: string): string[] {
  return value
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** A compiled matcher for the policy's patterns: name patterns for names, ARN patterns for ARNs. */
function secretMatcher(policy: SecretPolicy): (secretId: string) => boolean {
  if (policy.anySecret) return () => true;
  const names = policy.patterns.filter((p) => !isArnPattern(p));
  const arns = policy.patterns
    .filter(isArnPattern)
    .map(splitArnPattern)
    .flatMap((a) => ("fields" in a ? [a.fields] : []));
  return (secretId) => {
    if (!secretId.startsWith("arn:")) return names.some((p) => globMatch(p, secretId));
    const fields = secretId.split(":");
    if (fields.length !== ARN_FIELDS.length) return false;
    return arns.some((pattern) => pattern.every((p, i) => globMatch(p, fields[i] as string)));
  };
}

/**
 * One message per referenced secret that the namespace does not allow. The messages name the
 * secret, the namespace and the annotation, never the policy's patterns: a caller must not learn
 * another namespace's policy from a denial.
 */
export function checkSecretPolicy(
  spec: Pick<InjectionSpec, "secretIds" | "entries">,
  policy: SecretPolicy | undefined,
  namespace: string,
): string[] {
  if (!policy) return [];
  const ask = "ask the platform team to allow it, or use a secret the namespace allows";
  if ((policy.problems?.length ?? 0) > 0) {
    return [
      `namespace ${namespace}'s ${NAMESPACE_POLICY_ANNOTATION} / ${NAMESPACE_REGIONS_ANNOTATION} policy is not valid, so it allows no secret; ask the platform team to fix it (sm-injector's policy check lists what is wrong)`,
    ];
  }
  const allowed = secretMatcher(policy);
  const errors = new ProblemList();
  for (const id of spec.secretIds) {
    if (allowed(id)) continue;
    errors.push(
      id.startsWith("arn:")
        ? `secret ${quote(id)} is not allowed in namespace ${namespace} by its ${NAMESPACE_POLICY_ANNOTATION} annotation (a reference by ARN must match an ARN pattern, which pins its account and region; name patterns only admit names, which resolve in the pod's own account); ${ask}`
        : `secret ${quote(id)} is not allowed in namespace ${namespace} by its ${NAMESPACE_POLICY_ANNOTATION} annotation; ${ask}`,
    );
  }
  if (policy.regions) {
    const regions = new Set(policy.regions);
    const refused = new Set<string>();
    for (const source of spec.entries.flatMap(entrySources)) {
      const region = source.region;
      const key = `${source.secretId}\n${region ?? ""}`;
      if ((region !== undefined && regions.has(region)) || refused.has(key)) continue;
      refused.add(key);
      errors.push(
        `secret ${quote(source.secretId)} would be read in ${region === undefined ? "an unknown region" : `region ${region}`}, which namespace ${namespace} does not allow (its ${NAMESPACE_REGIONS_ANNOTATION} annotation); use an allowed region (${PREFIX}${FIXED_KEYS.region} or an ARN), or ask the platform team`,
      );
    }
  }
  return errors.list();
}
