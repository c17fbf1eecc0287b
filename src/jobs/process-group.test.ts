import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { livingGroupMembers, processExists, processStart, signalGroup } from './process-group.js';

const linuxOnly = { skip: process.platform !== 'linux' && 'needs /proc' };

test(
  'a process’s start time is field 22 of /proc/<pid>/stat, with the boot id',
  linuxOnly,
  async () => {
    const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    const pid = child.pid as number;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      assert.equal(processStart(pid), `${ticks}@${boot}`);
      assert.ok(processStart(process.pid), 'this process has one too');
      assert.notEqual(processStart(process.pid), processStart(pid));
      assert.deepEqual(livingGroupMembers(pid), [pid], 'detached: its own group');
      assert.ok(processExists(pid));
      assert.equal(signalGroup(pid, 0), true);
      assert.equal(signalGroup(pid, 'SIGTERM'), true);
      const [, signal] = await once(child, 'exit');
      assert.equal(signal, 'SIGTERM');
      assert.equal(signalGroup(pid, 0), false, 'no process left in it');
      assert.equal(processStart(pid), null);
    } finally {
      child.kill('SIGKILL');
    }
  },
);

test('0, 1, negative ids and this process are never signalled as a group', () => {
  for (const id of [0, -1, 1.5, Number.NaN]) assert.equal(processStart(id), null, String(id));
  for (const id of [0, 1, -1, -5, 1.5, Number.NaN, process.pid]) {
    assert.equal(signalGroup(id, 0), false, String(id));
  }
});
