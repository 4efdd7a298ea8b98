// Every metric the webhook exports, defined in one place and named after what it counts.
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

export interface WebhookMetrics {
  registry: Registry;
  admissions: Counter<"result">;
  admissionDuration: Histogram<"result">;
  injections: Counter<"namespace">;
  serviceAccountLookups: Counter<"result">;
  namespaceLookups: Counter<"result">;
  tlsReloads: Counter<"result">;
}

export function createMetrics(): WebhookMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "sm_injector_" });
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
    injections: new Counter({
      name: "sm_injector_injections_total",
      help: "Pods injected with the fetch init container, by namespace",
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
  };
}
