import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from './index.js';

test('defaults hold with no flags and no environment', () => {
  const config = loadConfig({ env: {} });
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.port, 8642);
  assert.equal(config.maxTokens, 8192);
  assert.equal(config.bodyLimit, 10 * 1024 * 1024);
  assert.equal(config.rateLimitPerSecond, 2);
  assert.equal(config.rateLimitBurst, 60);
  assert.deepEqual(config.upstreams, []);
  assert.match(config.home, /\.palisade$/);
});

test('flags win over environment, environment over defaults', () => {
  const config = loadConfig({
    flags: { port: '9001' },
    env: { PALISADE_PORT: '9000', PALISADE_HOST: '0.0.0.0', PALISADE_BODY_LIMIT: '1mb' },
  });
  assert.equal(config.port, 9001);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.bodyLimit, 1024 * 1024);
});

test('upstreams come from repeated flags or a comma list', () => {
  const fromFlags = loadConfig({
    flags: { upstreams: ['a=http://127.0.0.1:1234', 'b=http://127.0.0.1:8080'] },
  });
  assert.deepEqual(
    fromFlags.upstreams.map((u) => u.name),
    ['a', 'b'],
  );
  const fromEnv = loadConfig({ env: { PALISADE_UPSTREAMS: 'x=http://localhost:1, y=http://h:2' } });
  assert.deepEqual(fromEnv.upstreams, [
    { name: 'x', url: 'http://localhost:1' },
    { name: 'y', url: 'http://h:2' },
  ]);
});

test('a bad value gives one line naming the setting and what is allowed', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [
      { PALISADE_PORT: 'abc' },
      /^invalid PALISADE_PORT: expected an integer from 0 to 65535; got "abc"$/,
    ],
    [{ PALISADE_PORT: '70000' }, /PALISADE_PORT/],
    [{ PALISADE_MAX_TOKENS: '-5' }, /PALISADE_MAX_TOKENS/],
    [{ PALISADE_BODY_LIMIT: 'huge' }, /PALISADE_BODY_LIMIT: expected a size/],
    [{ PALISADE_UPSTREAMS: 'nourl' }, /PALISADE_UPSTREAMS: expected NAME=URL/],
    [{ PALISADE_LOG_LEVEL: 'loud' }, /PALISADE_LOG_LEVEL: expected one of/],
    [{ PALISADE_CORS_ORIGINS: 'not a url' }, /PALISADE_CORS_ORIGINS/],
    [{ PALISADE_STREAM_IDLE_TIMEOUT: '5' }, /expected a duration/],
    [{ PALISADE_ANTHROPIC_MODELS: 'a=b=c' }, /PALISADE_ANTHROPIC_MODELS: expected NAME=MODEL/],
    [{ PALISADE_ANTHROPIC_MODELS: 'one,two' }, /at most one MODEL alone/],
    [{ PALISADE_ANTHROPIC_MODELS: 'claude-*=' }, /PALISADE_ANTHROPIC_MODELS/],
  ];
  for (const [env, message] of cases) {
    assert.throws(
      () => loadConfig({ env }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes('\n'));
        return true;
      },
    );
  }
});

test('a bad flag names the flag and its variable', () => {
  assert.throws(() => loadConfig({ flags: { port: 'x' } }), /invalid --port \(PALISADE_PORT\)/);
});

test('the master secret is never echoed in an error', () => {
  assert.throws(
    () => loadConfig({ env: { PALISADE_SECRET: 'supersecretbutwrong' } }),
    (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.ok(!error.message.includes('supersecret'));
      return true;
    },
  );
});

test('a duration that sets a timer is refused past 24 days (Node would fire it at once)', () => {
  assert.throws(
    () => loadConfig({ env: { PALISADE_JOB_KILL_GRACE: '30d' } }),
    /invalid PALISADE_JOB_KILL_GRACE: expected at most 24 days/,
  );
  assert.throws(
    () => loadConfig({ env: { PALISADE_LOCAL_IDLE_UNLOAD: '25d' } }),
    /invalid PALISADE_LOCAL_IDLE_UNLOAD: expected at most 24 days/,
  );
  assert.equal(
    loadConfig({ env: { PALISADE_LOCAL_IDLE_UNLOAD: '24d' } }).localIdleUnloadMs,
    24 * 86_400_000,
  );
  assert.equal(loadConfig({ env: { PALISADE_SESSION_TTL: '90d' } }).sessionTtlMs, 90 * 86_400_000);
});
