// Reads a pod's ServiceAccount for its EKS IRSA annotations, cached briefly so that a Deployment
// scaling to 100 replicas costs one API call, not 100. Concurrent look-ups share one request.
import { type ServiceAccountIdentity, serviceAccountIdentity } from "../mutate/identity.ts";

export type ServiceAccountReader = (
  namespace: string,
  name: string,
) => Promise<Record<string, string> | undefined>;

export interface CachedLookup {
  lookup(namespace: string, name: string): Promise<ServiceAccountIdentity>;
  size(): number;
}

export function cachedServiceAccountLookup(
  read: ServiceAccountReader,
  opts: {
    ttlMs: number;
    maxEntries?: number;
    now?: () => number;
    onResult?: (r: "hit" | "miss" | "error") => void;
  },
): CachedLookup {
  const now = opts.now ?? Date.now;
  const max = opts.maxEntries ?? 5000;
  const cache = new Map<string, { at: number; value: Promise<ServiceAccountIdentity> }>();
  return {
    size: () => cache.size,
    lookup(namespace, name) {
      const key = `${namespace}/${name}`;
      const hit = cache.get(key);
      if (hit && now() - hit.at < opts.ttlMs) {
        opts.onResult?.("hit");
        return hit.value;
      }
      opts.onResult?.("miss");
      const value = read(namespace, name).then(serviceAccountIdentity);
      // Failures are not cached: the next admission retries.
      value.catch(() => {
        opts.onResult?.("error");
        if (cache.get(key)?.value === value) cache.delete(key);
      });
      if (cache.size >= max) cache.delete(cache.keys().next().value as string);
      cache.set(key, { at: now(), value });
      return value;
    },
  };
}

/** The real reader, through @kubernetes/client-node (loaded lazily: `fetch` never needs it). */
export async function kubernetesServiceAccountReader(kubeconfigPath?: string): Promise<ServiceAccountReader> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  const api = kc.makeApiClient(k8s.CoreV1Api);
  return async (namespace, name) => {
    try {
      const sa = await api.readNamespacedServiceAccount({ namespace, name });
      return sa.metadata?.annotations;
    } catch (e) {
      const code = (e as { code?: number }).code;
      // A pod naming a missing ServiceAccount is rejected by the API server itself; treat as no IRSA.
      if (code === 404) return undefined;
      throw new Error(code ? `HTTP ${code} from the Kubernetes API` : (e as Error).message);
    }
  };
}
