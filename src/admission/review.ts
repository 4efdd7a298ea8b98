// AdmissionReview v1 in, AdmissionReview v1 out. The handler is a plain async function of the
// decoded request; HTTP and TLS live in src/webhook. The only I/O it needs (reading the pod's
// ServiceAccount) is passed in.
import type { V1Pod } from "@kubernetes/client-node";
import { z } from "zod";
import { needsServiceAccountLookup, type ServiceAccountIdentity } from "../mutate/identity.ts";
import { patchJson } from "../mutate/patch.ts";
import { isInjected, mutatePod, syncInjectedIdentity } from "../mutate/pod.ts";
import { INJECT_LABEL } from "../spec/annotations.ts";
import { compileInjectionSpec } from "../spec/compile.ts";
import type { InjectorConfig } from "../spec/config.ts";
import { checkSecretPolicy, type SecretPolicy } from "../spec/policy.ts";

const GroupVersionKind = z.object({ group: z.string(), version: z.string(), kind: z.string() });

export const AdmissionReviewSchema = z.object({
  apiVersion: z.literal("admission.k8s.io/v1", {
    error: 'apiVersion must be "admission.k8s.io/v1" (set admissionReviewVersions: [v1])',
  }),
  kind: z.literal("AdmissionReview", { error: 'kind must be "AdmissionReview"' }),
  request: z.object(
    {
      uid: z.string().min(1),
      kind: GroupVersionKind,
      resource: z.object({ group: z.string(), version: z.string(), resource: z.string() }).optional(),
      subResource: z.string().optional(),
      name: z.string().optional(),
      namespace: z.string().optional(),
      operation: z.string(),
      object: z.record(z.string(), z.unknown()).nullable().optional(),
      dryRun: z.boolean().optional(),
      userInfo: z.object({ username: z.string().optional() }).passthrough().optional(),
    },
    { error: "request is missing or not an object" },
  ),
});
export type AdmissionReview = z.infer<typeof AdmissionReviewSchema>;
export type AdmissionRequest = AdmissionReview["request"];

// Hand-written checks of the common, well-formed case, because zod over a whole AdmissionReview and
// pod is a measurable share of an admission. They only ever say "valid" where the schema would
// (a property test holds them to it); anything else goes to the schema, which decides and explains.
type Obj = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Obj =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
const isOptionalString = (v: unknown) => v === undefined || typeof v === "string";
const isStringRecord = (v: unknown) =>
  isPlainObject(v) && Object.values(v).every((x) => typeof x === "string");
const isNamedList = (v: unknown) =>
  Array.isArray(v) && v.every((x) => isPlainObject(x) && typeof x.name === "string");

function isWellFormedReview(v: unknown): v is AdmissionReview {
  if (!isPlainObject(v) || v.apiVersion !== "admission.k8s.io/v1" || v.kind !== "AdmissionReview")
    return false;
  const r = v.request;
  if (!isPlainObject(r) || typeof r.uid !== "string" || r.uid === "" || typeof r.operation !== "string")
    return false;
  const k = r.kind;
  if (
    !isPlainObject(k) ||
    typeof k.group !== "string" ||
    typeof k.version !== "string" ||
    typeof k.kind !== "string"
  )
    return false;
  const res = r.resource;
  if (
    res !== undefined &&
    !(
      isPlainObject(res) &&
      typeof res.group === "string" &&
      typeof res.version === "string" &&
      typeof res.resource === "string"
    )
  )
    return false;
  if (!isOptionalString(r.subResource) || !isOptionalString(r.name) || !isOptionalString(r.namespace))
    return false;
  if (r.object !== undefined && r.object !== null && !isPlainObject(r.object)) return false;
  if (r.dryRun !== undefined && typeof r.dryRun !== "boolean") return false;
  const u = r.userInfo;
  return u === undefined || (isPlainObject(u) && isOptionalString(u.username));
}

/**
 * AdmissionReviewSchema.safeParse, with a fast path for well-formed reviews. Those come back as they
 * are, unknown fields included rather than stripped; nothing reads those.
 */
export function parseAdmissionReview(body: unknown): ReturnType<typeof AdmissionReviewSchema.safeParse> {
  if (isWellFormedReview(body)) return { success: true, data: body };
  return AdmissionReviewSchema.safeParse(body);
}

/** Just the parts of a Pod the handler trusts after checking them; the API server validates the rest. */
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

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string; reason?: string };
  patchType?: "JSONPatch";
  patch?: string;
  warnings?: string[];
}

export interface ReviewOutcome {
  response: AdmissionResponse;
  /** For metrics and the audit log. */
  result: "injected" | "skipped" | "unchanged" | "denied" | "error";
  reason: string;
  namespace: string;
  pod: string;
  serviceAccount: string;
  secretIds: readonly string[];
  identity?: string;
  dryRun: boolean;
}

export interface ReviewDeps {
  config: InjectorConfig;
  /** Reads the ServiceAccount's IRSA annotations; throws on API errors. */
  lookupServiceAccount(namespace: string, name: string): Promise<ServiceAccountIdentity>;
  /** Reads the namespace's secret policy (its sm-injector.io/allowed-secrets annotation); throws on API errors. */
  lookupNamespacePolicy?(namespace: string): Promise<SecretPolicy | undefined>;
}

export function reviewResponse(response: AdmissionResponse): {
  apiVersion: string;
  kind: string;
  response: AdmissionResponse;
} {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}

const MAX_WARNINGS = 20;

/** Decides one AdmissionRequest. Never throws: every failure becomes a clear denial. */
export async function reviewPod(request: AdmissionRequest, deps: ReviewDeps): Promise<ReviewOutcome> {
  const namespace = request.namespace ?? "";
  const base = {
    namespace,
    pod: request.name ?? "",
    serviceAccount: "",
    secretIds: [] as string[],
    dryRun: request.dryRun === true,
  };
  // Literals rather than `{ ...base, result, ... }`, which is slow on Node 20 (see withFields).
  const outcome = (
    result: ReviewOutcome["result"],
    reason: string,
    response: AdmissionResponse,
    identity?: string,
  ): ReviewOutcome => {
    const { pod, serviceAccount, secretIds, dryRun } = base;
    return identity === undefined
      ? { namespace, pod, serviceAccount, secretIds, dryRun, result, reason, response }
      : { namespace, pod, serviceAccount, secretIds, dryRun, result, reason, identity, response };
  };
  const allow = (result: ReviewOutcome["result"], reason: string): ReviewOutcome =>
    outcome(result, reason, { uid: request.uid, allowed: true });
  const deny = (reason: string, message: string, code = 400, warnings: string[] = []): ReviewOutcome =>
    outcome("denied", reason, {
      uid: request.uid,
      allowed: false,
      status: {
        code,
        message,
        reason: code === 400 ? "BadRequest" : code === 403 ? "Forbidden" : "InternalError",
      },
      ...(warnings.length > 0 && { warnings: warnings.slice(0, MAX_WARNINGS) }),
    });

  if (request.kind.kind !== "Pod" || request.kind.group !== "" || (request.subResource ?? "") !== "") {
    return allow("skipped", "not a pod");
  }
  if (request.operation !== "CREATE") return allow("skipped", `operation ${request.operation}`);

  const shape = isPodShape(request.object) ? { success: true as const } : PodShape.safeParse(request.object);
  if (!shape.success) {
    return deny(
      "malformed pod",
      `sm-injector: the pod in the AdmissionReview is malformed: ${shape.error.issues[0]?.message ?? "unknown"}`,
    );
  }
  const pod = request.object as V1Pod;
  base.pod =
    pod.metadata?.name || (pod.metadata?.generateName ? `${pod.metadata.generateName}<generated>` : base.pod);
  base.serviceAccount = pod.spec?.serviceAccountName ?? "default";

  const label = pod.metadata?.labels?.[INJECT_LABEL];
  if (label !== "true")
    return allow("skipped", label === undefined ? "no opt-in label" : `label ${INJECT_LABEL}=${label}`);

  if (isInjected(pod)) {
    // Reinvocation: only catch up with an identity another webhook added since.
    const synced = syncInjectedIdentity(pod);
    if (!synced.changed) return allow("unchanged", "already injected");
    return outcome(
      "injected",
      "identity synced on reinvocation",
      {
        uid: request.uid,
        allowed: true,
        patchType: "JSONPatch",
        patch: Buffer.from(patchJson(pod, synced.pod)).toString("base64"),
      },
      synced.identity,
    );
  }

  const compiled = compileInjectionSpec(pod, deps.config);
  if (!compiled.ok) {
    const n = compiled.errors.length;
    return deny(
      "invalid annotations",
      `sm-injector: ${n === 1 ? "1 problem" : `${n} problems`} with this pod's annotations:\n${compiled.errors.map((e) => `  - ${e}`).join("\n")}`,
      400,
      compiled.warnings,
    );
  }
  base.secretIds = [...compiled.spec.secretIds];

  if (deps.lookupNamespacePolicy) {
    let policy: SecretPolicy | undefined;
    try {
      policy = await deps.lookupNamespacePolicy(namespace);
    } catch (e) {
      return deny(
        "namespace lookup failed",
        `sm-injector: could not read Namespace ${namespace} for its secret policy (${(e as Error).message}); the pod was refused so it does not start without its secrets — retry, and check the webhook's RBAC (get namespaces)`,
        500,
      );
    }
    const violations = checkSecretPolicy(compiled.spec, policy, namespace);
    if (violations.length > 0) {
      return deny(
        "secret policy",
        `sm-injector: namespace policy refused this pod:${violations.map((v) => `\n  - ${v}`).join("")}`,
        403,
      );
    }
  }

  let sa: ServiceAccountIdentity | undefined;
  if (needsServiceAccountLookup(pod, compiled.spec.targets)) {
    try {
      sa = await deps.lookupServiceAccount(namespace, base.serviceAccount);
    } catch (e) {
      return deny(
        "serviceaccount lookup failed",
        `sm-injector: could not read ServiceAccount ${namespace}/${base.serviceAccount} to find its IAM role (${(e as Error).message}); the pod was refused so it does not start without its secrets — retry, and check the webhook's RBAC (get serviceaccounts)`,
        500,
      );
    }
  }

  const mutated = mutatePod(pod, compiled.spec, deps.config, sa);
  const warnings = [...compiled.warnings, ...mutated.warnings].slice(0, MAX_WARNINGS);

  return outcome(
    "injected",
    "injected",
    {
      uid: request.uid,
      allowed: true,
      patchType: "JSONPatch",
      patch: Buffer.from(patchJson(pod, mutated.pod)).toString("base64"),
      ...(warnings.length > 0 && { warnings }),
    },
    mutated.identity,
  );
}
