// Reads the Kubernetes objects the webhook needs (a pod's ServiceAccount for its IRSA annotations,
// its Namespace for the secret policy), cached briefly so that a Deployment scaling to 100 replicas
// costs one API call, not 100. Concurrent look-ups of one key share one request; failures are not
// cached.

export interface CachedLookup<T> {
  lookup(key: string): Promise<T>;
  size(): number;
}

export function cachedLookup<T>(
  read: (key: string) => Promise<T>,
  opts: {
    ttlMs: number;
    maxEntries?: number;
    now?: () => number;
    onResult?: (r: "hit" | "miss" | "error") => void;
  },
): CachedLookup<T> {
  const now = opts.now ?? Date.now;
  const max = opts.maxEntries ?? 5000;
  const cache = new Map<string, { at: number; value: Promise<T> }>();
  return {
    size: () => cache.size,
    lookup(key) {
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

function apiError(e: unknown): Error {
  const code = (e as { code?: number }).code;
  return new Error(code ? `HTTP ${code} from the Kubernetes API` : (e as Error).message);
}

/** The real readers, through @kubernetes/client-node (loaded lazily: `fetch` never needs it). */
export async function kubernetesReaders(kubeconfigPath?: string): Promise<KubeReaders> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const notFound = (e: unknown) => (e as { code?: number }).code === 404;
  return {
    async serviceAccountAnnotations(namespace, name) {
      try {
        return (await api.readNamespacedServiceAccount({ namespace, name })).metadata?.annotations ?? {};
      } catch (e) {
        // A pod naming a missing ServiceAccount is refused by the API server itself; treat as no IRSA.
        if (notFound(e)) return undefined;
        throw apiError(e);
      }
    },
    async namespaceAnnotations(name) {
      try {
        return (await api.readNamespace({ name })).metadata?.annotations ?? {};
      } catch (e) {
        if (notFound(e)) return undefined;
        throw apiError(e);
      }
    },
  };
}
