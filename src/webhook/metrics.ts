// Every metric the webhook exports, defined in one place and named after what it counts.
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { DENIAL_CODES } from "../admission/denials.ts";

export interface WebhookMetrics {
  registry: Registry;
  admissions: Counter<"result">;
  admissionDuration: Histogram<"result">;
  denials: Counter<"code">;
  injections: Counter<"namespace">;
  serviceAccountLookups: Counter<"result">;
  namespaceLookups: Counter<"result">;
  tlsReloads: Counter<"result">;
  refusedRequests: Counter<"reason">;
}

/** Distinct namespace label values of sm_injector_injections_total at most. */
export const MAX_NAMESPACE_LABELS = 1000;
/** The label value for namespaces beyond the cap or not confirmed to exist (never a valid name). */
export const OTHER_NAMESPACE = "_other";

/**
 * Chooses the namespace label of an injection. Anyone who can reach /mutate can name any namespace,
 * so a namespace the API server says does not exist (or a name that cannot exist) is never a label,
 * and at most MAX_NAMESPACE_LABELS distinct namespaces are: the series count stays bounded by the
 * cluster, not by the callers. When the check cannot be made (API error) the cap alone bounds it.
 */
export function namespaceLabeler(
  exists?: (namespace: string) => Promise<boolean>,
  max = MAX_NAMESPACE_LABELS,
): (namespace: string) => Promise<string> {
  const seen = new Set<string>();
  return async (namespace) => {
    if (seen.has(namespace)) return namespace;
    if (seen.size >= max) return OTHER_NAMESPACE;
    const confirmed = exists ? await exists(namespace).catch(() => undefined) : undefined;
    if (confirmed === false || seen.size >= max) return OTHER_NAMESPACE;
    seen.add(namespace);
    return namespace;
  };
}

export function createMetrics(): WebhookMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "sm_injector_" });
  const denials = new Counter({
    name: "sm_injector_admission_denials_total",
    help: `Pods refused, by denial code (${DENIAL_CODES.join(", ")}; see the README)`,
    labelNames: ["code"],
    registers: [registry],
  });
  // Every code from the start, at 0: the series are the fixed set, and a rate() sees the first denial.
  for (const code of DENIAL_CODES) denials.inc({ code }, 0);
  return {
    registry,
    admissions: new Counter({
      name: "sm_injector_admission_requests_total",
      help: "AdmissionReview requests answered, by result (injected, unchanged, skipped, denied, error)",
      labelNames: ["result"],
      registers: [registry],
    }),
    admissionDuration: new Histogram({
      name: "sm_injector_admission_duration_seconds",
      help: "Time to answer an AdmissionReview, by result",
      labelNames: ["result"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    denials,
    injections: new Counter({
      name: "sm_injector_injections_total",
      help: `Pods injected with the fetch init container, by namespace (only namespaces the API server confirmed exist, at most ${MAX_NAMESPACE_LABELS}; the rest count as "${OTHER_NAMESPACE}")`,
      labelNames: ["namespace"],
      registers: [registry],
    }),
    serviceAccountLookups: new Counter({
      name: "sm_injector_serviceaccount_lookups_total",
      help: "ServiceAccount reads for IRSA annotations, by result (hit = served from cache, miss, error)",
      labelNames: ["result"],
      registers: [registry],
    }),
    namespaceLookups: new Counter({
      name: "sm_injector_namespace_lookups_total",
      help: "Namespace reads for the secret policy, by result (hit = served from cache, miss, error)",
      labelNames: ["result"],
      registers: [registry],
    }),
    tlsReloads: new Counter({
      name: "sm_injector_tls_reloads_total",
      help: "Serving certificate reloads after the files changed, by result",
      labelNames: ["result"],
      registers: [registry],
    }),
    refusedRequests: new Counter({
      name: "sm_injector_refused_requests_total",
      help: "Requests refused before their body was read, by reason (body_budget: too many bytes of bodies in flight; client_certificate: /mutate without a valid client certificate; pipelining: too many unanswered requests on one connection)",
      labelNames: ["reason"],
      registers: [registry],
    }),
  };
}
