// Writes the output atomically: a temp file in the same directory (so rename stays on one file
// system), write, fsync, chmod, rename, then fsync of the directory. The app — or this init
// container restarted — never sees a half-written file. Values go to no other place.
//
// Synchronous on purpose: the init container has nothing else to do meanwhile, and node:fs/promises
// is a module (with node:os and readline behind it) that a pod start would otherwise load and
// compile just for these few calls.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";

export interface OutputFile {
  fileName: string;
  content: Buffer;
}

function fsyncDir(dir: string): void {
  const d = openSync(dir, "r");
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function writeOne(dir: string, { fileName, content }: OutputFile, mode: number): void {
  // Starts owner-only (and `wx`: never through an existing file or link); the final mode is set
  // before the file gets its name, so no reader ever sees it with wider permissions.
  const tmp = join(dir, `.${fileName}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", 0o600);
  let closed = false;
  try {
    writeFileSync(fd, content);
    fsyncSync(fd);
    fchmodSync(fd, mode);
    closed = true;
    closeSync(fd);
    renameSync(tmp, join(dir, fileName));
  } catch (e) {
    if (!closed) ignoreError(() => closeSync(fd));
    ignoreError(() => unlinkSync(tmp));
    throw e;
  }
}

function ignoreError(f: () => void): void {
  try {
    f();
  } catch {}
}

/**
 * Writes every file (each atomically), then syncs the directory once. If one fails, the files this
 * call already renamed into place are removed again: a failed run leaves no partial output.
 */
export function writeAtomically(dir: string, files: readonly OutputFile[], mode: number): void {
  const done: string[] = [];
  try {
    for (const f of files) {
      writeOne(dir, f, mode);
      done.push(f.fileName);
    }
    fsyncDir(dir);
  } catch (e) {
    for (const name of done) ignoreError(() => unlinkSync(join(dir, name)));
    throw e;
  }
}

/**
 * Replaces the text of the kubelet's termination-message file, only when it exists (never created
 * here: elsewhere, e.g. a local run, there is nothing to do). Returns whether it was written; a
 * failure here never changes the fetch's outcome.
 */
export function writeTerminationMessage(file: string, text: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r+");
    ftruncateSync(fd, 0);
    writeSync(fd, text, 0);
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) ignoreError(() => closeSync(fd as number));
  }
}
