// The one admission decision: pod + the facts admission needs (its ServiceAccount's identity, its
// Namespace's policy) → skip, deny with a message, or the injected pod and the patch to it. The
// webhook (admission/review.ts) reads the facts from the API server, `sm-injector inject`
// (inject/manifests.ts) from the documents of its input; both call this, so they cannot disagree.
//
// parse → strip what a pod claims → compile → policy → identity → mutate → bound → patch. Pure but
// for the caller's look-ups, and it never throws: an exception becomes an "error" denial.
import type { V1Pod } from "@kubernetes/client-node";
import { z } from "zod";
import { INJECT_LABEL } from "../contract/annotations.ts";
import { type CompileResult, compileInjectionSpec, type InjectionSpec } from "../contract/compile.ts";
import type { InjectorConfig } from "../contract/config.ts";
import { FETCH_SPEC_ENV, MAX_FETCH_SPEC_BYTES } from "../contract/fetch-spec.ts";
import { checkSecretPolicy, type SecretPolicy } from "../contract/policy.ts";
import { needsServiceAccountLookup, type ServiceAccountIdentity } from "../mutate/identity.ts";
import { patchJson } from "../mutate/patch.ts";
import { isInjected, type MutationResult, mutatePod } from "../mutate/pod.ts";
import { keepApiServerAdditions, keepIncomingOrder, stripInjection, stripObjects } from "../mutate/strip.ts";
import { DENIALS, type DenialCode } from "./denials.ts";
import { boundWarnings, cleanText, denialMessage, describeException, plainMessage } from "./messages.ts";

/** The facts admission needs beyond the pod, supplied by the caller. Either may throw (API errors): the pod is then refused. */
export interface DecisionContext {
  config: InjectorConfig;
  /** IRSA settings of a ServiceAccount; asked only when no targeted container carries an identity. */
  serviceAccount(
    namespace: string,
    name: string,
  ): Promise<ServiceAccountIdentity | undefined> | ServiceAccountIdentity | undefined;
  /** The Namespace's allowed-secrets policy (undefined: none); absent when policies are not enforced. */
  namespacePolicy?(namespace: string): Promise<SecretPolicy | undefined> | SecretPolicy | undefined;
}

interface DecisionBase {
  reason: string;
  /** The pod's ServiceAccount name (for the audit line). */
  serviceAccount: string;
}

export interface SkipDecision extends DecisionBase {
  verdict: "skipped";
}

export interface DenyDecision extends DecisionBase {
  verdict: "denied" | "error";
  /** What kind of refusal this is: stable, for metrics, the audit line and the README. */
  denial: DenialCode;
  /** HTTP status of the AdmissionResponse, DENIALS[denial].status. */
  code: 400 | 403 | 500;
  /** Bounded (messages.ts), starts with "sm-injector: ". */
  message: string;
  warnings: string[];
  secretIds: readonly string[];
}

export interface PatchDecision extends DecisionBase {
  /** "unchanged" when the pod already is exactly what sm-injector derives from it (reinvocation). */
  verdict: "injected" | "unchanged";
  pod: V1Pod;
  /** RFC 6902 patch from the incoming pod to `pod`, as JSON text ("[]" when unchanged). */
  patch: string;
  warnings: string[];
  secretIds: readonly string[];
  identity: MutationResult["identity"];
  /** The pod arrived carrying sm-injector's init container, which was taken off and derived afresh. */
  rederived: boolean;
}

export type InjectionDecision = SkipDecision | DenyDecision | PatchDecision;

type Denial = DenyDecision;

/** Just the parts of a Pod the decision trusts after checking them; the API server validates the rest. */
export const PodShape = z.object({
  metadata: z
    .object({
      name: z.string().optional(),
      generateName: z.string().optional(),
      namespace: z.string().optional(),
      labels: z.record(z.string(), z.string()).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    })
    .passthrough()
    .optional(),
  spec: z
    .object({
      serviceAccountName: z.string().optional(),
      containers: z.array(z.object({ name: z.string() }).passthrough()),
      initContainers: z.array(z.object({ name: z.string() }).passthrough()).optional(),
      volumes: z.array(z.object({ name: z.string() }).passthrough()).optional(),
    })
    .passthrough(),
});

type Obj = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Obj =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
const isOptionalString = (v: unknown) => v === undefined || typeof v === "string";
// A loop rather than Object.values(v).every(…): a pod may carry tens of thousands of annotations,
// and the array copy cost as much as the check.
const isStringRecord = (v: unknown) => {
  if (!isPlainObject(v)) return false;
  for (const k in v) if (typeof v[k] !== "string") return false;
  return true;
};
const isNamedList = (v: unknown) =>
  Array.isArray(v) && v.every((x) => isPlainObject(x) && typeof x.name === "string");

/** PodShape.safeParse(p).success for the common case; false leaves it to the schema. */
export function isPodShape(p: unknown): boolean {
  if (!isPlainObject(p)) return false;
  const m = p.metadata;
  if (
    m !== undefined &&
    !(
      isPlainObject(m) &&
      isOptionalString(m.name) &&
      isOptionalString(m.generateName) &&
      isOptionalString(m.namespace) &&
      (m.labels === undefined || isStringRecord(m.labels)) &&
      (m.annotations === undefined || isStringRecord(m.annotations))
    )
  )
    return false;
  const s = p.spec;
  return (
    isPlainObject(s) &&
    isOptionalString(s.serviceAccountName) &&
    isNamedList(s.containers) &&
    (s.initContainers === undefined || isNamedList(s.initContainers)) &&
    (s.volumes === undefined || isNamedList(s.volumes))
  );
}

/** Decides one pod of `namespace`. Never throws. */
export async function decideInjection(
  pod: unknown,
  namespace: string,
  ctx: DecisionContext,
): Promise<InjectionDecision> {
  let serviceAccount = "";
  try {
    serviceAccount = serviceAccountName(pod);
    return await decide(pod, namespace, serviceAccount, ctx);
  } catch (e) {
    return internalError(e, serviceAccount);
  }
}

/** The denial for an exception nobody expected: it names the exception, cut and cleaned, never more of the pod. */
export function internalError(e: unknown, serviceAccount = ""): Denial {
  return {
    verdict: "error",
    denial: "internal-error",
    reason: "internal error",
    serviceAccount,
    code: DENIALS["internal-error"].status,
    message: plainMessage(
      `internal error while deciding on this pod (${describeException(e)}); the pod was refused so it does not start without its secrets — retry, and report this with the webhook's log if it persists`,
    ),
    warnings: [],
    secretIds: [],
  };
}

async function decide(
  incoming: unknown,
  namespace: string,
  serviceAccount: string,
  ctx: DecisionContext,
): Promise<InjectionDecision> {
  const skip = optInProblem(incoming);
  if (skip !== undefined) return { verdict: "skipped", reason: skip, serviceAccount };
  const shape = shapeProblem(incoming);
  if (shape !== undefined) return deny("malformed-pod", "malformed pod", plainMessage(shape), serviceAccount);

  const original = incoming as V1Pod;
  const rederived = isInjected(original);
  const authored = rederived ? authoredPod(original, ctx.config) : { ok: true as const, pod: original };
  if (!authored.ok) return invalidAnnotations(authored.compiled, serviceAccount);
  const { pod } = authored;

  const compiled = compileInjectionSpec(pod, ctx.config);
  if (!compiled.ok) return invalidAnnotations(compiled, serviceAccount);
  const { spec } = compiled;

  const refused =
    (await policyProblem(spec, namespace, ctx, serviceAccount)) ??
    (await identityOrProblem(pod, spec, namespace, serviceAccount, ctx));
  if ("verdict" in refused) return withSecretIds(refused, spec);

  const mutated = mutatePod(pod, spec, ctx.config, refused.identity);
  if (rederived) mutated.pod = keepIncomingOrder(original, keepApiServerAdditions(original, mutated.pod));
  const tooLarge = specSizeProblem(mutated.fetchSpec, serviceAccount);
  if (tooLarge) return withSecretIds(tooLarge, spec);

  const patch = patchJson(original, mutated.pod);
  const unchanged = patch === "[]";
  return {
    verdict: unchanged ? "unchanged" : "injected",
    reason: unchanged ? "already injected" : rederived ? "re-derived" : "injected",
    serviceAccount,
    pod: mutated.pod,
    patch,
    warnings: boundWarnings([...compiled.warnings, ...mutated.warnings]),
    secretIds: spec.secretIds,
    identity: mutated.identity,
    rederived,
  };
}

/**
 * A pod carrying sm-injector's init container, judged as the pod its author wrote: the additions
 * (and whatever they claim) are taken off, to be derived again from the annotations. Which
 * containers were given a path variable or a wrapper depends on the spec, so the annotations are
 * compiled first on the pod without sm-injector's objects (they do not depend on the rest).
 */
function authoredPod(
  pod: V1Pod,
  config: InjectorConfig,
): { ok: true; pod: V1Pod } | { ok: false; compiled: Extract<CompileResult, { ok: false }> } {
  const compiled = compileInjectionSpec(stripObjects(pod), config);
  if (!compiled.ok) return { ok: false, compiled };
  return { ok: true, pod: stripInjection(pod, compiled.spec) };
}

function serviceAccountName(pod: unknown): string {
  const name = (pod as V1Pod | null | undefined)?.spec?.serviceAccountName;
  return typeof name === "string" ? name || "default" : "default";
}

/** Why the pod is not for sm-injector, or undefined when it opted in. */
function optInProblem(pod: unknown): string | undefined {
  const labels = (pod as V1Pod | null | undefined)?.metadata?.labels;
  const label = isPlainObject(labels) ? labels[INJECT_LABEL] : undefined;
  if (label === "true") return undefined;
  return label === undefined ? "no opt-in label" : `label ${INJECT_LABEL}=${cleanText(String(label), 63)}`;
}

function shapeProblem(pod: unknown): string | undefined {
  if (isPodShape(pod)) return undefined;
  const parsed = PodShape.safeParse(pod);
  if (parsed.success) return undefined;
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
  return `the pod is malformed: ${where}${issue?.message ?? "unknown problem"}`;
}

function deny(denial: DenialCode, reason: string, message: string, serviceAccount: string): Denial {
  const code = DENIALS[denial].status;
  return { verdict: "denied", denial, reason, serviceAccount, code, message, warnings: [], secretIds: [] };
}

function withSecretIds(d: Denial, spec: InjectionSpec): Denial {
  return { ...d, secretIds: spec.secretIds };
}

function invalidAnnotations(compiled: Extract<CompileResult, { ok: false }>, serviceAccount: string): Denial {
  // errors is already cut to the first problems (with "and N more"); problemCount counts them all.
  const n = compiled.problemCount;
  return {
    ...deny(
      compiled.overLimits ? "limit-exceeded" : "invalid-annotations",
      "invalid annotations",
      denialMessage(
        `${n === 1 ? "1 problem" : `${n} problems`} with this pod's annotations`,
        compiled.errors,
      ),
      serviceAccount,
    ),
    warnings: boundWarnings(compiled.warnings),
  };
}

async function policyProblem(
  spec: InjectionSpec,
  namespace: string,
  ctx: DecisionContext,
  serviceAccount: string,
): Promise<Denial | undefined> {
  if (!ctx.namespacePolicy) return undefined;
  let policy: SecretPolicy | undefined;
  try {
    policy = await ctx.namespacePolicy(namespace);
  } catch (e) {
    return deny(
      "namespace-lookup",
      "namespace lookup failed",
      plainMessage(
        `could not read Namespace ${cleanText(namespace, 63)} for its secret policy (${errorText(e)}); the pod was refused so it does not start without its secrets — retry, and check the webhook's RBAC (get namespaces)`,
      ),
      serviceAccount,
    );
  }
  const violations = checkSecretPolicy(spec, policy, namespace);
  if (violations.length === 0) return undefined;
  return deny(
    "secret-policy",
    "secret policy",
    denialMessage("namespace policy refused this pod", violations),
    serviceAccount,
  );
}

async function identityOrProblem(
  pod: V1Pod,
  spec: InjectionSpec,
  namespace: string,
  serviceAccount: string,
  ctx: DecisionContext,
): Promise<Denial | { identity: ServiceAccountIdentity | undefined }> {
  if (!needsServiceAccountLookup(pod, spec.targets)) return { identity: undefined };
  try {
    return { identity: await ctx.serviceAccount(namespace, serviceAccount) };
  } catch (e) {
    return deny(
      "serviceaccount-lookup",
      "serviceaccount lookup failed",
      plainMessage(
        `could not read ServiceAccount ${cleanText(namespace, 63)}/${cleanText(serviceAccount, 253)} to find its IAM role (${errorText(e)}); the pod was refused so it does not start without its secrets — retry, and check the webhook's RBAC (get serviceaccounts)`,
      ),
      serviceAccount,
    );
  }
}

function specSizeProblem(fetchSpec: string, serviceAccount: string): Denial | undefined {
  const bytes = Buffer.byteLength(fetchSpec);
  if (bytes <= MAX_FETCH_SPEC_BYTES) return undefined;
  return deny(
    "spec-too-large",
    "spec too large",
    plainMessage(
      `this pod's secret references compile to a ${bytes}-byte ${FETCH_SPEC_ENV} for the init container, over the limit of ${MAX_FETCH_SPEC_BYTES} bytes (Linux refuses to start a process with an environment variable over 128 KiB, so the pod could never start); reference fewer secrets or JSON keys, use one sm-injector.io/env-from (JSON expansion) instead of many #key references to the same secret, or shorten the JSON keys`,
    ),
    serviceAccount,
  );
}

const errorText = (e: unknown) => cleanText(e instanceof Error ? e.message : String(e), 200);
