// Writes the output atomically: a temp file in the same directory (so rename stays on one file
// system), write, fsync, chmod, rename, then fsync of the directory. The app — or this init
// container restarted — never sees a half-written file. Values go to no other place.
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

export interface OutputFile {
  fileName: string;
  content: Buffer;
}

async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

async function writeOne(dir: string, { fileName, content }: OutputFile, mode: number): Promise<void> {
  // Starts owner-only (and `wx`: never through an existing file or link); the final mode is set
  // before the file gets its name, so no reader ever sees it with wider permissions.
  const tmp = join(dir, `.${fileName}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(content);
    await fh.sync();
    await fh.chmod(mode);
    await fh.close();
    await rename(tmp, join(dir, fileName));
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes every file (each atomically), then syncs the directory once. If one fails, the files this
 * call already renamed into place are removed again: a failed run leaves no partial output.
 */
export async function writeAtomically(
  dir: string,
  files: readonly OutputFile[],
  mode: number,
): Promise<void> {
  const done: string[] = [];
  try {
    for (const f of files) {
      await writeOne(dir, f, mode);
      done.push(f.fileName);
    }
    await fsyncDir(dir);
  } catch (e) {
    await Promise.all(done.map((name) => unlink(join(dir, name)).catch(() => {})));
    throw e;
  }
}

/**
 * Replaces the text of the kubelet's termination-message file, only when it exists (never created
 * here: elsewhere, e.g. a local run, there is nothing to do). Returns whether it was written; a
 * failure here never changes the fetch's outcome.
 */
export async function writeTerminationMessage(file: string, text: string): Promise<boolean> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(file, "r+");
    await fh.truncate(0);
    await fh.write(text, 0);
    return true;
  } catch {
    return false;
  } finally {
    await fh?.close().catch(() => {});
  }
}
