import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHostGuard, hostName } from './host-guard.js';

test('hostName strips port, brackets and a trailing dot', () => {
  assert.equal(hostName('LocalHost:8642'), 'localhost');
  assert.equal(hostName('[::1]:8642'), '::1');
  assert.equal(hostName('example.com.'), 'example.com');
});

test('loopback names, IP literals, the bind address and configured names pass', () => {
  const allowed = createHostGuard({
    bindHost: 'gpu-box.lan',
    allowedHosts: ['llm.example.com', '*.corp.example'],
  });
  for (const host of [
    'localhost:8642',
    '127.0.0.1:8642',
    '[::1]:8642',
    'app.localhost',
    '192.168.1.20:8642',
    'gpu-box.lan:8642',
    'llm.example.com',
    'a.corp.example',
  ]) {
    assert.equal(allowed(host), true, host);
  }
});

test('unknown names are refused, whatever they resolve to', () => {
  const allowed = createHostGuard({ bindHost: '127.0.0.1', allowedHosts: ['*.corp.example'] });
  for (const host of [
    'attacker.example',
    'localhost.attacker.example',
    'corp.example.evil',
    '',
    undefined,
  ]) {
    assert.equal(allowed(host), false, String(host));
  }
});
