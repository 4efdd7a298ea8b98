// The webhook's own Kubernetes reader (src/kube/api.ts, which replaced @kubernetes/client-node):
// kubeconfig users by token, token file and client certificate, the answers it maps (404, errors,
// oversized), against real HTTP(S) servers on loopback. The e2e tests read through a real API server.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type ApiError, apiReader, loadApiTarget, NOT_CONFIGURED } from "../../src/kube/api.ts";
import { generateCA, generateCert } from "../e2e/harness/certs.ts";

const kubeconfig = (server: string, cluster: string, user: string) =>
  [
    "apiVersion: v1",
    "kind: Config",
    `clusters: [{name: c, cluster: {server: '${server}'${cluster}}}]`,
    `users: [{name: u, user: {${user}}}]`,
    "contexts: [{name: x, context: {cluster: c, user: u}}]",
    "current-context: x",
  ].join("\n");

describe("the Kubernetes API reader", () => {
  let dir = "";
  let plain: http.Server;
  let url = "";
  const seen: { path?: string; auth?: string }[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kube-api-"));
    plain = http.createServer((req, res) => {
      seen.push({ path: req.url, auth: req.headers.authorization });
      if (req.url === "/api/v1/namespaces/erp")
        return res.end(JSON.stringify({ metadata: { annotations: { a: "b" } } }));
      if (req.url === "/api/v1/namespaces/big") return res.end("x".repeat(2 * 1024 * 1024));
      if (req.url === "/api/v1/namespaces/forbidden") return res.writeHead(403).end("{}");
      res.writeHead(404).end("{}");
    });
    await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
  });
  after(async () => {
    plain?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("a token user: the bearer token on each request; 404 is undefined, 403 an ApiError", async () => {
    const file = path.join(dir, "token.yaml");
    await writeFile(file, kubeconfig(url, "", "token: s3cret"));
    const get = apiReader(await loadApiTarget(file));
    assert.deepEqual(await get("/api/v1/namespaces/erp"), { metadata: { annotations: { a: "b" } } });
    assert.equal(seen.at(-1)?.auth, "Bearer s3cret");
    assert.equal(await get("/api/v1/namespaces/none"), undefined);
    await assert.rejects(get("/api/v1/namespaces/forbidden"), (e: ApiError) => e.code === 403);
  });

  test("a token file is re-read for every request (the kubelet rotates projected tokens)", async () => {
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "first\n");
    const file = path.join(dir, "tokenfile.yaml");
    await writeFile(file, kubeconfig(url, "", "tokenFile: token"));
    const get = apiReader(await loadApiTarget(file));
    await get("/api/v1/namespaces/erp");
    assert.equal(seen.at(-1)?.auth, "Bearer first");
    await writeFile(tokenFile, "second\n");
    await get("/api/v1/namespaces/erp");
    assert.equal(seen.at(-1)?.auth, "Bearer second");
  });

  test("an answer over 1 MiB is refused, not parsed", async () => {
    const file = path.join(dir, "big.yaml");
    await writeFile(file, kubeconfig(url, "", "token: t"));
    await assert.rejects(apiReader(await loadApiTarget(file))("/api/v1/namespaces/big"), /too large/);
  });

  test("no API server configured: every read fails at once, saying so (no connection attempted)", async () => {
    await assert.rejects(apiReader(undefined)("/api/v1/namespaces/erp"), { message: NOT_CONFIGURED });
  });

  test("exec and auth-provider users are refused with a clear error", async () => {
    const file = path.join(dir, "exec.yaml");
    await writeFile(file, kubeconfig(url, "", "exec: {command: aws}"));
    await assert.rejects(loadApiTarget(file), /authentication by exec is not supported/);
  });

  test("HTTPS with the cluster's CA and a client certificate (inline data)", async () => {
    const ca = await generateCA(dir, "kube-ca");
    const serving = await generateCert(dir, ca, { cn: "kube-apiserver", sans: ["127.0.0.1"] });
    const client = await generateCert(dir, ca, { cn: "sm-injector", client: true });
    const { readFile } = await import("node:fs/promises");
    const server = https.createServer(
      {
        cert: await readFile(serving.certPath),
        key: await readFile(serving.keyPath),
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const peer = (req.socket as import("node:tls").TLSSocket).getPeerCertificate();
        res.end(JSON.stringify({ metadata: { annotations: { cn: peer.subject?.CN } } }));
      },
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const b64 = async (p: string) => (await readFile(p)).toString("base64");
      const file = path.join(dir, "tls.yaml");
      await writeFile(
        file,
        kubeconfig(
          `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
          `, certificate-authority-data: ${Buffer.from(ca.certPem).toString("base64")}`,
          `client-certificate-data: ${await b64(client.certPath)}, client-key-data: ${await b64(client.keyPath)}`,
        ),
      );
      assert.deepEqual(await apiReader(await loadApiTarget(file))("/api/v1/namespaces/erp"), {
        metadata: { annotations: { cn: "sm-injector" } },
      });
    } finally {
      server.close();
    }
  });
});
