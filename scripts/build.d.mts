import type { BuildOptions } from "esbuild";
export declare const common: BuildOptions;
/** The snapshot's file name, next to the entry. */
export declare const SNAPSHOT_BLOB: string;
/** Builds `outdir`/fetch.snapshot.blob with `node` (default: this one); returns its path. */
export declare function buildFetchSnapshot(outdir: string, node?: string): Promise<string>;
/** Whether `node` starts from the blob in `appDir` (false when it is missing or from another build). */
export declare function snapshotUsable(appDir: string, node?: string): boolean;
/** The command that starts the CLI built into `appDir` (the image's ENTRYPOINT). */
export declare function shippedEntrypoint(
  appDir: string,
  opts?: { node?: string; inImage?: { node: string; appDir: string } },
): string[];
