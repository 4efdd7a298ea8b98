// The look-up caches hold what direct callers of /mutate can name: bounded entries, bounded keys,
// and names that cannot exist never reach the Kubernetes API.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { cachedLookup, InvalidNameError, kubernetesReaders } from "../../src/kube/lookups.ts";

test("a key longer than any Kubernetes name is refused without a read; entries stay bounded", async () => {
  let reads = 0;
  const lookup = cachedLookup(
    async () => {
      reads++;
      return 1;
    },
    { ttlMs: 60_000 },
  );
  await assert.rejects(lookup.lookup(`ns/${"a".repeat(100_000)}`), InvalidNameError);
  assert.equal(reads, 0);
  assert.equal(lookup.size(), 0);
  // Random short names fill the cache up to its bound, not beyond.
  const bounded = cachedLookup(async () => undefined, { ttlMs: 60_000, maxEntries: 100 });
  for (let i = 0; i < 1000; i++) await bounded.lookup(`ns-${i}`);
  assert.equal(bounded.size(), 100);
});

test("names that cannot exist never reach the API server", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "lookups-"));
  try {
    // A kubeconfig pointing at a port nothing listens on: a request would fail with ECONNREFUSED,
    // not with the name error.
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    );
    const readers = await kubernetesReaders(kubeconfig);
    await assert.rejects(readers.namespaceAnnotations("Not_A_Namespace"), InvalidNameError);
    await assert.rejects(readers.namespaceAnnotations("n".repeat(64)), /is not a valid namespace name/);
    await assert.rejects(
      readers.serviceAccountAnnotations("erp", `a/../${"b".repeat(300)}`),
      InvalidNameError,
    );
    // A valid name does go to the API (and fails there, here).
    await assert.rejects(readers.namespaceAnnotations("erp"), (e: Error) => !(e instanceof InvalidNameError));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
