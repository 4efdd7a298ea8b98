// Reads the Kubernetes objects the webhook needs (a pod's ServiceAccount for its IRSA annotations,
// its Namespace for the secret policy), cached briefly so that a Deployment scaling to 100 replicas
// costs one API call, not 100. Concurrent look-ups of one key share one request; failures are not
// cached. Keys come from AdmissionReviews, which anyone who reaches /mutate can write: the cache
// holds a bounded number of entries with bounded keys, and names that cannot exist are refused
// without an API call.

/** A name that cannot exist in Kubernetes: refused without an API call. */
export class InvalidNameError extends Error {}

export interface CachedLookup<T> {
  lookup(key: string): Promise<T>;
  size(): number;
}

export function cachedLookup<T>(
  read: (key: string) => Promise<T>,
  opts: {
    ttlMs: number;
    maxEntries?: number;
    /** Longer keys are refused without a read (default 512: namespace + "/" + a 253-char name). */
    maxKeyLength?: number;
    now?: () => number;
    onResult?: (r: "hit" | "miss" | "error") => void;
  },
): CachedLookup<T> {
  const now = opts.now ?? Date.now;
  const max = opts.maxEntries ?? 5000;
  const maxKeyLength = opts.maxKeyLength ?? 512;
  const cache = new Map<string, { at: number; value: Promise<T> }>();
  return {
    size: () => cache.size,
    lookup(key) {
      if (key.length > maxKeyLength) {
        opts.onResult?.("error");
        return Promise.reject(new InvalidNameError(`a name of ${key.length} characters cannot exist`));
      }
      const hit = cache.get(key);
      if (hit && now() - hit.at < opts.ttlMs) {
        opts.onResult?.("hit");
        return hit.value;
      }
      opts.onResult?.("miss");
      const value = read(key);
      value.catch(() => {
        opts.onResult?.("error");
        if (cache.get(key)?.value === value) cache.delete(key);
      });
      if (opts.ttlMs > 0) {
        if (cache.size >= max) cache.delete(cache.keys().next().value as string);
        cache.set(key, { at: now(), value });
      }
      return value;
    },
  };
}

export interface KubeReaders {
  /** Annotations of a ServiceAccount; undefined when it does not exist. */
  serviceAccountAnnotations(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Annotations of a Namespace; undefined when it does not exist. */
  namespaceAnnotations(name: string): Promise<Record<string, string> | undefined>;
}

// DNS-1123: a namespace is a label (63 characters), a ServiceAccount a subdomain (253).
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function invalidName(kind: string, name: string, pattern: RegExp): InvalidNameError | undefined {
  if (pattern.test(name)) return undefined;
  const shown = name.length > 64 ? `${name.slice(0, 64)}…` : name;
  return new InvalidNameError(`${JSON.stringify(shown)} is not a valid ${kind} name`);
}

/** The real readers, over node:https (src/kube/api.ts; loaded lazily: `fetch` never needs it). */
export async function kubernetesReaders(kubeconfigPath?: string): Promise<KubeReaders> {
  const { apiReader, loadApiTarget } = await import("./api.ts");
  const get = apiReader(await loadApiTarget(kubeconfigPath));
  const annotations = (o: unknown) =>
    ((o as { metadata?: { annotations?: Record<string, string> } }).metadata?.annotations ?? {}) as Record<
      string,
      string
    >;
  return {
    async serviceAccountAnnotations(namespace, name) {
      const invalid =
        invalidName("namespace", namespace, DNS_LABEL) ?? invalidName("ServiceAccount", name, DNS_SUBDOMAIN);
      if (invalid) throw invalid;
      // A pod naming a missing ServiceAccount is refused by the API server itself; undefined: no IRSA.
      const sa = await get(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}`);
      return sa === undefined ? undefined : annotations(sa);
    },
    async namespaceAnnotations(name) {
      const invalid = invalidName("namespace", name, DNS_LABEL);
      if (invalid) throw invalid;
      const ns = await get(`/api/v1/namespaces/${name}`);
      return ns === undefined ? undefined : annotations(ns);
    },
  };
}
