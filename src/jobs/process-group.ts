import { readdirSync, readFileSync } from 'node:fs';

/** The fields after the `(comm)` of /proc/<pid>/stat; `comm` may hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

let bootId: string | null | undefined;

function currentBootId(): string | null {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootId = null;
    }
  }
  return bootId;
}

/**
 * When a process started, as text that tells it from a later process given the same id:
 * Linux's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), with the boot
 * id. Null where there is no /proc, or when the process is gone.
 */
export function processStart(pid: number): string | null {
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  // Field 22 counted from 1; the fields after `(comm)` start at field 3.
  const ticks = statFields(pid)?.[19];
  if (ticks === undefined || !/^\d+$/.test(ticks)) return null;
  const boot = currentBootId();
  return boot === null ? ticks : `${ticks}@${boot}`;
}

/** Whether a process with this id exists (a zombie counts), whoever owns it. */
export function processExists(pid: number): boolean {
  if (!isGroupId(pid)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** 0, 1 and negative ids mean "my group" or "everyone" to kill(2): never signalled as a group. */
function isGroupId(pgid: number): boolean {
  return Number.isSafeInteger(pgid) && pgid > 1 && pgid !== process.pid;
}

/**
 * Sends `signal` (0 only asks) to every process of the group `pgid`. False when the group
 * has no process left (ESRCH) or is not ours to signal.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (!isGroupId(pgid)) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Processes of the group `pgid` that are alive (not zombies), from /proc; [] without it. */
export function livingGroupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    // Field 3 is the state, field 5 the process group.
    if (!fields || fields[0] === 'Z' || fields[0] === 'X') continue;
    if (Number(fields[2]) === pgid) members.push(Number(entry));
  }
  return members;
}
