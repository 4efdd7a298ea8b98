import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** A certificate authority generated with the `openssl` CLI (ECDSA P-256, self-signed). */
export interface CertAuthority {
  name: string;
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

/** A certificate signed by a {@link CertAuthority}, with its private key. */
export interface IssuedCert {
  name: string;
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

export interface CertOptions {
  /** Subject common name (for a client cert: the Kubernetes user name). */
  cn: string;
  /** Subject alternative names: IP addresses and DNS names, e.g. ["127.0.0.1", "localhost"]. */
  sans?: string[];
  /** Subject organization(s) (for a client cert: the Kubernetes groups, e.g. "system:masters"). */
  org?: string | string[];
  /** A client certificate (extendedKeyUsage clientAuth) instead of a server one (serverAuth). */
  client?: boolean;
  /** Base name of the files (`<name>.crt`, `<name>.key`); defaults to a slug of `cn`. */
  name?: string;
  /** Validity in days (default 365). */
  days?: number;
}

/** An RSA key pair (PEM files), e.g. the service-account token signing key. */
export interface KeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync("openssl", args, { cwd, maxBuffer: 10 * 1024 * 1024 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT")
      throw new Error("the `openssl` CLI was not found on PATH (needed to generate test certificates)");
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Escapes a value for an `openssl -subj` component. */
function subjValue(value: string): string {
  return value.replace(/[\\/+,=]/g, (c) => `\\${c}`);
}

function slug(value: string): string {
  return value.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "cert";
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Generates a self-signed CA `<dir>/<name>.crt` + `<dir>/<name>.key`. */
export async function generateCA(dir: string, name: string, days = 3650): Promise<CertAuthority> {
  await mkdir(dir, { recursive: true });
  const base = slug(name);
  const certPath = path.join(dir, `${base}.crt`);
  const keyPath = path.join(dir, `${base}.key`);
  await openssl(
    [
      "req",
      "-x509",
      ...EC_KEY,
      "-sha256",
      "-days",
      String(days),
      "-subj",
      `/CN=${subjValue(name)}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
      "-addext",
      "subjectKeyIdentifier=hash",
      "-keyout",
      keyPath,
      "-out",
      certPath,
    ],
    dir,
  );
  const [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { name, certPath, keyPath, certPem, keyPem };
}

/**
 * Generates a key and a certificate signed by `ca`: a server certificate with the given SANs, or
 * (client: true) a client certificate whose CN/O are the Kubernetes user/groups.
 */
export async function generateCert(dir: string, ca: CertAuthority, opts: CertOptions): Promise<IssuedCert> {
  await mkdir(dir, { recursive: true });
  const base = slug(opts.name ?? opts.cn);
  const certPath = path.join(dir, `${base}.crt`);
  const keyPath = path.join(dir, `${base}.key`);
  const csrPath = path.join(dir, `${base}.csr`);
  const extPath = path.join(dir, `${base}.ext`);
  const orgs = opts.org === undefined ? [] : Array.isArray(opts.org) ? opts.org : [opts.org];
  const subj = `${orgs.map((o) => `/O=${subjValue(o)}`).join("")}/CN=${subjValue(opts.cn)}`;
  const sans = (opts.sans ?? []).map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`));
  const ext = [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${opts.client ? "clientAuth" : "serverAuth"}`,
    "authorityKeyIdentifier=keyid",
    ...(sans.length > 0 ? [`subjectAltName=${sans.join(",")}`] : []),
  ];
  await writeFile(extPath, `${ext.join("\n")}\n`);
  await openssl(["req", "-new", ...EC_KEY, "-subj", subj, "-keyout", keyPath, "-out", csrPath], dir);
  await openssl(
    [
      "x509",
      "-req",
      "-sha256",
      "-in",
      csrPath,
      "-CA",
      ca.certPath,
      "-CAkey",
      ca.keyPath,
      "-set_serial",
      `0x${randomBytes(16)
        .toString("hex")
        .replace(/^[89a-f]/, "7")}`,
      "-days",
      String(opts.days ?? 365),
      "-extfile",
      extPath,
      "-out",
      certPath,
    ],
    dir,
  );
  await Promise.all([rm(csrPath, { force: true }), rm(extPath, { force: true })]);
  const [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { name: base, certPath, keyPath, certPem, keyPem };
}

/** Generates an RSA key pair `<dir>/<name>.key` (PKCS#8) + `<dir>/<name>.pub` (SPKI). */
export async function generateRsaKeyPair(dir: string, name: string, bits = 2048): Promise<KeyPair> {
  await mkdir(dir, { recursive: true });
  const privateKeyPath = path.join(dir, `${slug(name)}.key`);
  const publicKeyPath = path.join(dir, `${slug(name)}.pub`);
  await openssl(
    ["genpkey", "-algorithm", "RSA", "-pkeyopt", `rsa_keygen_bits:${bits}`, "-out", privateKeyPath],
    dir,
  );
  await openssl(["pkey", "-in", privateKeyPath, "-pubout", "-out", publicKeyPath], dir);
  return { privateKeyPath, publicKeyPath };
}
