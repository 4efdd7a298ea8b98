// The webhook's look-up cache (ServiceAccounts, Namespaces): a Deployment scaling to 100 replicas
// costs one API call, an API error is never remembered (the next pod asks again), and an entry
// expires after its TTL.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cachedLookup } from "../../src/kube/lookups.ts";

/** A reader that answers from `answers` in turn (an Error is thrown), counting its reads. */
function reader(answers: Array<string | Error>) {
  let reads = 0;
  return {
    reads: () => reads,
    read: async (key: string) => {
      const a = answers[Math.min(reads++, answers.length - 1)];
      if (a instanceof Error) throw a;
      return `${key}=${a}`;
    },
  };
}

test("a hit within the TTL is not read again; concurrent look-ups of one key share one read", async () => {
  const r = reader(["1"]);
  const results: string[] = [];
  const lookup = cachedLookup(r.read, { ttlMs: 30_000, onResult: (x) => results.push(x) });
  const all = await Promise.all(Array.from({ length: 100 }, () => lookup.lookup("erp/api")));
  assert.ok(all.every((v) => v === "erp/api=1"));
  assert.equal(r.reads(), 1);
  assert.equal(results.filter((x) => x === "miss").length, 1);
  assert.equal(results.filter((x) => x === "hit").length, 99);
});

test("a failed read is not cached: the next look-up reads again and gets the answer", async () => {
  const r = reader([new Error("HTTP 503 from the Kubernetes API"), "2"]);
  const results: string[] = [];
  const lookup = cachedLookup(r.read, { ttlMs: 30_000, onResult: (x) => results.push(x) });
  await assert.rejects(lookup.lookup("erp/api"), /HTTP 503/);
  assert.equal(await lookup.lookup("erp/api"), "erp/api=2");
  assert.equal(r.reads(), 2);
  assert.ok(results.includes("error"));
  assert.equal(lookup.size(), 1);
});

test("an entry expires after its TTL; a TTL of 0 caches nothing", async () => {
  let now = 1_000;
  const r = reader(["1", "2", "3"]);
  const lookup = cachedLookup(r.read, { ttlMs: 30_000, now: () => now });
  assert.equal(await lookup.lookup("k"), "k=1");
  now += 29_999;
  assert.equal(await lookup.lookup("k"), "k=1");
  now += 1;
  assert.equal(await lookup.lookup("k"), "k=2");
  const uncached = reader(["1", "2"]);
  const none = cachedLookup(uncached.read, { ttlMs: 0 });
  await none.lookup("k");
  assert.equal(await none.lookup("k"), "k=2");
  assert.equal(none.size(), 0);
});
