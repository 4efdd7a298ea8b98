// Image sizes (issue 13): what ships (sm-injector, amd64 and arm64) next to the Go peers' images,
// all built offline by scripts/build-images.sh. Compressed = the sum of the layer blobs of the OCI
// archive (what a node pulls); unpacked = the sum of the regular files in those layers (what the
// image takes on the node's disk, before filesystem overhead).
//
//   node --import tsx bench/images.ts        (also part of `npm run bench`)
import { execFileSync, spawnSync } from "node:child_process";
import { gunzipSync } from "node:zlib";

export interface ImageSize {
  image: string;
  arch: string;
  compressedBytes: number;
  unpackedBytes: number;
  files: number;
  note: string;
}
export interface ImagesResult {
  images: ImageSize[];
  /** Why there are no numbers (the images could not be built here), or undefined. */
  skipped?: string;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string };
}

const REPO_ROOT = new URL("..", import.meta.url).pathname;

/** One blob of an OCI archive (a tar of an OCI layout), by digest. */
function blob(archive: string, digest: string): Buffer {
  return execFileSync("tar", ["-xOf", archive, `blobs/${digest.replace(":", "/")}`], {
    maxBuffer: 1 << 30,
  });
}

/** Sum and count of the regular files in an uncompressed tar (ustar headers, 512-byte blocks). */
export function tarContentSize(tar: Buffer): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  let longName = false;
  for (let off = 0; off + 512 <= tar.length; ) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const size = Number.parseInt(
      header.subarray(124, 136).toString("latin1").replace(/\0.*$/s, "").trim() || "0",
      8,
    );
    const type = String.fromCharCode(header[156] ?? 0);
    // GNU long names and pax headers carry metadata of the next entry, not file content.
    if ((type === "0" || type === "\0") && !longName) {
      bytes += size;
      files += 1;
    }
    longName = type === "L" || type === "x";
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return { bytes, files };
}

/** The per-platform manifests of an OCI archive (one for a single-arch archive, N for an index). */
function manifests(
  archive: string,
): { arch: string; manifest: { layers: Descriptor[]; config: Descriptor } }[] {
  const index = JSON.parse(execFileSync("tar", ["-xOf", archive, "index.json"]).toString());
  const out: { arch: string; manifest: { layers: Descriptor[]; config: Descriptor } }[] = [];
  const visit = (d: Descriptor) => {
    const doc = JSON.parse(blob(archive, d.digest).toString());
    if (d.mediaType.endsWith("index.v1+json")) for (const m of doc.manifests) visit(m);
    else {
      const config = JSON.parse(blob(archive, doc.config.digest).toString());
      out.push({ arch: d.platform?.architecture ?? config.architecture, manifest: doc });
    }
  };
  for (const d of index.manifests) visit(d);
  return out;
}

/** The sizes of every platform in OCI archive `archive`. */
export function measureArchive(archive: string, image: string, note: string): ImageSize[] {
  return manifests(archive).map(({ arch, manifest }) => {
    let unpackedBytes = 0;
    let files = 0;
    for (const layer of manifest.layers) {
      const raw = blob(archive, layer.digest);
      const content = tarContentSize(layer.mediaType.includes("gzip") ? gunzipSync(raw) : raw);
      unpackedBytes += content.bytes;
      files += content.files;
    }
    const compressedBytes = manifest.layers.reduce((sum, l) => sum + l.size, 0);
    return { image, arch, compressedBytes, unpackedBytes, files, note };
  });
}

// What each archive is, in the table's words (the file names are scripts/build-images.sh's).
const SUBJECTS: { file: RegExp; image: string; note: string }[] = [
  {
    file: /\/sm-injector\.oci\.tar$/,
    image: "sm-injector",
    note: "distroless-like Debian 13 + Node.js + bundle",
  },
  { file: /\/node-base-amd64\.oci\.tar$/, image: "(its base alone)", note: "Debian 13 libraries + Node.js" },
  { file: /\/peer-vault-k8s-amd64\.oci\.tar$/, image: "vault-k8s (webhook)", note: "upstream: alpine" },
  { file: /\/peer-secret-init-amd64\.oci\.tar$/, image: "bank-vaults secret-init", note: "upstream: alpine" },
  { file: /\/peer-secrets-init-amd64\.oci\.tar$/, image: "doitintl secrets-init", note: "upstream: busybox" },
];

/** Builds (or finds cached) the images and measures them. */
export function benchImages(opts: { log: (s: string) => void }): ImagesResult {
  opts.log("images: scripts/build-images.sh sm-injector peers (cached after the first run)");
  const built = spawnSync("bash", ["scripts/build-images.sh", "sm-injector", "peers"], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 20,
  });
  if (built.status !== 0)
    return { images: [], skipped: `scripts/build-images.sh failed (exit ${built.status ?? built.signal})` };
  const archives = built.stdout
    .trim()
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "");
  const images: ImageSize[] = [];
  for (const s of SUBJECTS) {
    const archive = archives.find((a) => s.file.test(a));
    if (archive) images.push(...measureArchive(archive, s.image, s.note));
  }
  return { images };
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** The README table. */
export function imagesTable(r: ImagesResult): string[] {
  if (r.skipped) return [`**Image sizes**: not measured (${r.skipped}).`];
  return [
    "**Image sizes** (OCI archives from `scripts/build-images.sh`; compressed = layer blobs a node pulls, unpacked = files on its disk):",
    "",
    "| Image | Arch | Compressed MB | Unpacked MB | Files | Base |",
    "|---|---|---|---|---|---|",
    ...r.images.map(
      (i) =>
        `| ${i.image} | ${i.arch} | ${mb(i.compressedBytes)} | ${mb(i.unpackedBytes)} | ${i.files} | ${i.note} |`,
    ),
    "",
    "The peers are built from their pinned sources (scripts/build-peers.sh: stripped, CGO off) into images shaped like their upstream Dockerfiles; with no registry here, busybox-static + the CA bundle + tzdata from Debian stand in for their alpine / busybox base.",
  ];
}

if (import.meta.main) {
  const r = benchImages({ log: (s) => process.stderr.write(`[bench] ${s}\n`) });
  process.stdout.write(`${imagesTable(r).join("\n")}\n`);
}
