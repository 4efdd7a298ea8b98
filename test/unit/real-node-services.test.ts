// The real node's stand-ins for CoreDNS and kube-proxy (test/e2e/harness/real-node-services.ts), checked
// with the real parsers: Node's DNS resolver (c-ares) against the DNS server on loopback, and
// iptables-restore --test on the rules.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type dgram from "node:dgram";
import { Resolver } from "node:dns/promises";
import { after, before, describe, test } from "node:test";
import { getFreePort } from "../e2e/harness/ports.ts";
import { SERVICES_CHAIN } from "../e2e/harness/real-node-host.ts";
import { serviceRules, startDns } from "../e2e/harness/real-node-services.ts";

describe("the Services' DNS server, asked by Node's resolver", () => {
  let server: dgram.Socket;
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  const names = new Map([
    ["web.shop.svc", "10.0.0.17"],
    ["web.shop.svc.cluster.local", "10.0.0.17"],
  ]);
  before(async () => {
    const port = await getFreePort();
    server = await startDns("127.0.0.1", () => names, port);
    resolver.setServers([`127.0.0.1:${port}`]);
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test("a Service's names resolve to its cluster IP, in any letter case", async () => {
    assert.deepEqual(await resolver.resolve4("web.shop.svc"), ["10.0.0.17"]);
    assert.deepEqual(await resolver.resolve4("WEB.shop.svc.cluster.local"), ["10.0.0.17"]);
  });

  test("an unknown name is NXDOMAIN (the resolver moves on to the next search domain at once)", async () => {
    await assert.rejects(resolver.resolve4("web.shop.svc.shop.svc.cluster.local"), { code: "ENOTFOUND" });
  });

  test("a known name has no IPv6 address (no data, not NXDOMAIN)", async () => {
    await assert.rejects(resolver.resolve6("web.shop.svc"), { code: "ENODATA" });
  });
});

describe("the Services' DNAT rules", () => {
  const rules = serviceRules([
    {
      clusterIP: "10.0.0.17",
      port: 443,
      protocol: "TCP",
      endpoints: [
        { ip: "10.244.0.5", port: 8443 },
        { ip: "10.244.0.6", port: 8443 },
      ],
    },
    { clusterIP: "10.0.0.18", port: 80, protocol: "TCP", endpoints: [] },
  ]);

  test("two endpoints: the first taken half the time, the second otherwise; none: no rule", () => {
    assert.deepEqual(rules, [
      `-A ${SERVICES_CHAIN} -d 10.0.0.17/32 -p tcp --dport 443 -m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.244.0.5:8443`,
      `-A ${SERVICES_CHAIN} -d 10.0.0.17/32 -p tcp --dport 443 -j DNAT --to-destination 10.244.0.6:8443`,
    ]);
  });

  const canTest = process.getuid?.() === 0 && spawnSync("iptables-restore", ["--version"]).status === 0;
  test("iptables-restore accepts them", { skip: canTest ? false : "needs root and iptables-restore" }, () => {
    const input = ["*nat", `:${SERVICES_CHAIN} - [0:0]`, ...rules, "COMMIT", ""].join("\n");
    const r = spawnSync("iptables-restore", ["--test", "--noflush"], { input, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  });
});
