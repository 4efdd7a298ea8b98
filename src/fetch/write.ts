// Writes the output atomically: a temp file in the same directory, fsync, chmod, rename, fsync of
// the directory. The app (or a restarted init container) never sees a half-written file.
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

async function writeOne(dir: string, name: string, content: Buffer, mode: number): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(content);
    await fh.sync();
    await fh.chmod(mode);
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, join(dir, name));
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Writes every file, then syncs the directory once. */
export async function writeAtomically(
  dir: string,
  files: readonly { fileName: string; content: Buffer }[],
  mode: number,
): Promise<void> {
  for (const f of files) await writeOne(dir, f.fileName, f.content, mode);
  await fsyncDir(dir);
}
