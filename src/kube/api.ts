// The webhook's two Kubernetes reads (a ServiceAccount, a Namespace) over node:https, without
// @kubernetes/client-node: that library (5 MB bundled) cost the webhook ~46 MiB of resident memory
// for two GETs (issue 13). Where the API server is and how to authenticate come from the same places
// as the library's loadFromDefault: --kubeconfig, else $KUBECONFIG (its first file), else
// ~/.kube/config, else the in-cluster ServiceAccount (its token re-read, as the kubelet rotates it).
// Kubeconfig users authenticate with a token, a token file or a client certificate; exec and
// auth-provider plugins are refused with a clear error.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { homedir } from "node:os";
import path from "node:path";
import { parse } from "yaml";

export interface ApiTarget {
  server: URL;
  tls: https.AgentOptions;
  /** The bearer token for each request (re-read from its file, if it has one). */
  token: () => Promise<string | undefined>;
}

/** A Kubernetes API answer other than 2xx; `code` is the HTTP status. */
export class ApiError extends Error {
  constructor(readonly code: number) {
    super(`HTTP ${code} from the Kubernetes API`);
  }
}

const IN_CLUSTER = "/var/run/secrets/kubernetes.io/serviceaccount";
/** A ServiceAccount or Namespace is a few KiB; anything far larger is not one. */
const MAX_ANSWER_BYTES = 1024 * 1024;
const TIMEOUT_MS = 10_000;

type Named<T> = { name?: string } & T;
interface Kubeconfig {
  "current-context"?: string;
  contexts?: Named<{ context?: { cluster?: string; user?: string } }>[];
  clusters?: Named<{ cluster?: Record<string, unknown> }>[];
  users?: Named<{ user?: Record<string, unknown> }>[];
}

const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);

/** Where the API server is and how to authenticate, as the webhook is configured. */
export async function loadApiTarget(
  kubeconfigPath?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ApiTarget | undefined> {
  const file =
    kubeconfigPath ??
    str(env.KUBECONFIG?.split(path.delimiter).find((f) => f !== "" && existsSync(f))) ??
    [path.join(homedir(), ".kube", "config")].find((f) => existsSync(f));
  if (file) return fromKubeconfig(file);
  if (existsSync(path.join(IN_CLUSTER, "token"))) return inCluster(env);
  // Nothing configured (a local run): every read fails at once, and the webhook answers as for an
  // unreachable API server. (The library tried http://localhost:8080, an API server port removed
  // from Kubernetes in 1.20.)
  return undefined;
}

/** The reads' error when no API server is configured. */
export const NOT_CONFIGURED =
  "no Kubernetes API configured: not in a cluster (no ServiceAccount token) and no --kubeconfig, $KUBECONFIG or ~/.kube/config";

async function inCluster(env: NodeJS.ProcessEnv): Promise<ApiTarget> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) throw new Error("in a cluster without KUBERNETES_SERVICE_HOST: cannot reach the API server");
  const server = new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`);
  return {
    server,
    tls: { ca: await readFile(path.join(IN_CLUSTER, "ca.crt")) },
    token: async () => (await readFile(path.join(IN_CLUSTER, "token"), "utf8")).trim(),
  };
}

async function fromKubeconfig(file: string): Promise<ApiTarget> {
  const config = (parse(await readFile(file, "utf8")) ?? {}) as Kubeconfig;
  const dir = path.dirname(file);
  const named = <T>(list: Named<T>[] | undefined, name: string | undefined, kind: string): T => {
    const found = list?.find((x) => x.name === name);
    if (!found) throw new Error(`${file}: no ${kind} named ${JSON.stringify(name)}`);
    return found;
  };
  const context = named(config.contexts, config["current-context"], "context").context ?? {};
  const cluster = named(config.clusters, context.cluster, "cluster").cluster ?? {};
  const user = named(config.users, context.user, "user").user ?? {};
  for (const unsupported of ["exec", "auth-provider", "username"])
    if (user[unsupported] !== undefined)
      throw new Error(
        `${file}: user authentication by ${unsupported} is not supported by the webhook; use a token, a token file or a client certificate`,
      );
  // A file path or inline base64 data, as kubeconfig allows for each.
  const material = async (key: string) => {
    const data = str(cluster[`${key}-data`] ?? user[`${key}-data`]);
    if (data) return Buffer.from(data, "base64");
    const at = str(cluster[key] ?? user[key]);
    return at ? readFile(path.resolve(dir, at)) : undefined;
  };
  const server = str(cluster.server);
  if (!server) throw new Error(`${file}: the cluster has no server`);
  const ca = await material("certificate-authority");
  const cert = await material("client-certificate");
  const key = await material("client-key");
  const tokenFile = str(user.tokenFile);
  const token = str(user.token);
  return {
    server: new URL(server),
    tls: {
      ...(ca && { ca }),
      ...(cert && { cert }),
      ...(key && { key }),
      ...(cluster["insecure-skip-tls-verify"] === true && { rejectUnauthorized: false }),
      ...(str(cluster["tls-server-name"]) && { servername: str(cluster["tls-server-name"]) }),
    },
    token: tokenFile
      ? async () => (await readFile(path.resolve(dir, tokenFile), "utf8")).trim()
      : async () => token,
  };
}

/**
 * GETs `apiPath` (e.g. /api/v1/namespaces/erp) as JSON; undefined for 404, ApiError for any other
 * non-2xx. One keep-alive agent per target.
 */
export function apiReader(target: ApiTarget | undefined): (apiPath: string) => Promise<unknown | undefined> {
  if (!target) return () => Promise.reject(new Error(NOT_CONFIGURED));
  const secure = target.server.protocol === "https:";
  const agent = secure
    ? new https.Agent({ ...target.tls, keepAlive: true, maxSockets: 16 })
    : new http.Agent({ keepAlive: true, maxSockets: 16 });
  return async (apiPath) => {
    const token = await target.token();
    const url = new URL(apiPath, target.server);
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(
        url,
        {
          agent,
          headers: { accept: "application/json", ...(token && { authorization: `Bearer ${token}` }) },
          timeout: TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER_BYTES) req.destroy(new Error("the Kubernetes API answer is too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status === 404) return resolve(undefined);
            if (status < 200 || status >= 300) return reject(new ApiError(status));
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
            } catch {
              reject(new Error("the Kubernetes API answered something that is not JSON"));
            }
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () =>
        req.destroy(new Error(`no answer from the Kubernetes API in ${TIMEOUT_MS} ms`)),
      );
      req.on("error", reject);
      req.end();
    });
  };
}
