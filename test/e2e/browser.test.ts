/**
 * The web app in a real browser (playwright-core driving Debian's Chromium) against a real
 * Palisade and a mock upstream: first admin, chat with a streamed answer, stop, two-factor
 * sign-in, a second user, the CSP. Saves the screenshots used by the README and docs.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { totpCode } from '../../src/auth/index.js';
import { browserMissing, launchBrowser, openPage, type WatchedPage } from '../support/browser.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import { addUser, FAST_SCRYPT_ENV, PASSWORD } from '../support/web.js';

// `npm run screenshots` writes them into docs/screenshots; a plain test run keeps them in tmp.
const SCREENSHOTS =
  process.env.PALISADE_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'palisade-screenshots-'));
const ADMIN = 'ada';
const ADMIN_PASSWORD = 'a long admin passphrase 42';
const XSS = '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>';
const ANSWER_PARTS = [
  'Here is a **plan**:\n\n',
  '1. Read the file\n',
  '2. Count the words\n\n',
  '```python\nprint(len(open("notes.txt").read().split()))\n```\n\n',
  `Raw HTML stays inert: ${XSS}\n\n`,
  '[docs](https://example.com/docs)',
];

function chunk(content: string, finish: string | null = null) {
  return {
    id: 'chatcmpl-browser',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'mock-writer',
    choices: [{ index: 0, delta: { content }, finish_reason: finish }],
  };
}

const missing = browserMissing();
if (missing !== undefined && process.env.CI) {
  test('Chromium is installed for the browser tests', () => assert.fail(missing));
}

describe('the web app in Chromium', { skip: missing && !process.env.CI ? missing : false }, () => {
  let upstream: MockUpstream;
  let palisade: TestPalisade;
  let browser: Browser;
  let admin: WatchedPage;
  let totpSecret = '';
  let adminConversationUrl = '';

  before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    upstream = await startMockUpstream({
      models: ['mock-writer', 'endless-stream'],
      chunkDelayMs: 40,
      scripts: {
        'mock-writer': {
          chunks: [...ANSWER_PARTS.map((part) => chunk(part)), chunk('', 'stop')],
        },
      },
    });
    palisade = await startPalisade({
      env: { ...FAST_SCRYPT_ENV, PALISADE_UPSTREAMS: `mock=${upstream.url}` },
    });
    browser = await launchBrowser();
    admin = await openPage(browser);
  });

  after(async () => {
    await browser?.close();
    await palisade?.close();
    await upstream?.close();
  });

  async function screenshot(page: Page, name: string) {
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
  }

  test('the app loads with zero CSP violations or console errors', async () => {
    const { page, problems, cspViolations } = admin;
    const response = await page.goto(palisade.url + '/');
    assert.equal(response?.status(), 200);
    assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await page.getByRole('button', { name: 'Create admin' }).waitFor();
    assert.deepEqual(cspViolations, []);
    assert.deepEqual(problems, []);
  });

  test('the first admin is set up from the setup page', async () => {
    const { page } = admin;
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByLabel(/repeat/i).fill(ADMIN_PASSWORD);
    await screenshot(page, 'setup');
    await page.getByRole('button', { name: 'Create admin' }).click();
    await page.getByRole('button', { name: 'New chat' }).waitFor();
  });

  test('a chat answer streams in token by token and renders as inert Markdown', async () => {
    const { page } = admin;
    await page.getByTestId('model-picker').selectOption('mock-writer');
    const composer = page.getByRole('textbox', { name: /message/i });
    await composer.fill('How do I count the words in notes.txt?');
    await composer.press('Enter');

    const answer = page.locator('[data-testid="message"][data-role="assistant"]').last();
    // While streaming, the answer grows and is marked as streaming.
    await page.locator('[data-testid="message"][data-status="streaming"]').waitFor();
    await answer.locator('text=Read the file').waitFor();
    await page
      .locator('[data-testid="message"][data-role="assistant"][data-status="complete"]')
      .waitFor();
    const text = await answer.innerText();
    assert.match(text, /Count the words/);
    assert.match(text, /print\(len/);
    assert.equal(await answer.locator('strong', { hasText: 'plan' }).count(), 1);
    // Model output cannot run script or carry event handlers.
    assert.equal(await page.evaluate('window.__xss'), undefined);
    assert.equal(await answer.locator('[onerror], script').count(), 0);
    const link = answer.locator('a', { hasText: 'docs' });
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await answer.getByRole('button', { name: 'Copy', exact: true }).count(), 1);
    // The conversation was named from the first message.
    await page
      .getByTestId('conversations')
      .getByText(/How do I count the words/)
      .waitFor();
    adminConversationUrl = page.url();
    assert.match(adminConversationUrl, /\/c\/[0-9a-f-]{36}$/);
    assert.deepEqual(admin.cspViolations, []);
    await screenshot(page, 'chat');
  });

  test('a conversation exports as Markdown and JSON downloads', async () => {
    const { page } = admin;
    for (const [item, pattern] of [
      ['Export as Markdown', /^## User[\s\S]*Count the words/m],
      ['Export as JSON', /"messages"/],
    ] as const) {
      await page.getByText('Export', { exact: true }).click();
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: item }).click(),
      ]);
      const path = await download.path();
      assert.match(readFileSync(path, 'utf8'), pattern);
      assert.match(download.suggestedFilename(), /^how-do-i-count/);
    }
  });

  test('Stop ends a generation and keeps what was written', async () => {
    const { page } = admin;
    const before = upstream.abortedStreams;
    await page.getByTestId('model-picker').selectOption('endless-stream');
    const composer = page.getByRole('textbox', { name: /message/i });
    await composer.fill('Write forever');
    await composer.press('Enter');
    const streaming = page.locator('[data-testid="message"][data-status="streaming"]');
    await streaming.waitFor();
    await page.waitForFunction(
      `(document.querySelector('[data-testid="message"][data-status="streaming"]')?.textContent?.length ?? 0) > 5`,
    );
    await page.getByRole('button', { name: 'Stop' }).click();
    const stopped = page.locator('[data-testid="message"][data-status="stopped"]').last();
    await stopped.waitFor();
    assert.ok((await stopped.innerText()).length > 0);
    await page.getByRole('button', { name: 'Send' }).waitFor();
    // The upstream saw the client go.
    for (let i = 0; i < 50 && upstream.abortedStreams === before; i += 1) {
      await page.waitForTimeout(20);
    }
    assert.equal(upstream.abortedStreams, before + 1);
  });

  test('two-factor sign-in is enrolled from Settings with a code computed here', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: /set up two-factor/i }).click();
    totpSecret = (await page.getByTestId('totp-secret').innerText()).trim();
    assert.match(totpSecret, /^[A-Z2-7]{32}$/);
    await screenshot(page, 'totp-enroll');
    await page.getByLabel('Code from your app').fill(totpCode(totpSecret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    const codes = page.getByTestId('recovery-codes');
    await codes.waitFor();
    assert.equal(await codes.locator('li').count(), 10);
    // The settings page also shows what this account's chats used (two answers so far).
    await page.getByTestId('usage').getByText('Messages').waitFor();
    assert.match(await page.getByTestId('usage').innerText(), /Messages\s+4/);
    await screenshot(page, 'settings');
  });

  test('sign out, then sign in again with the password and a TOTP code', async () => {
    const { page } = admin;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const code = page.getByLabel(/code/i);
    await code.waitFor();
    await screenshot(page, 'login-totp');
    // The enrollment used the current step's code; the next step's is accepted once.
    await code.fill(totpCode(totpSecret, Date.now() + 30_000));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('button', { name: 'New chat' }).waitFor();
    await page
      .getByTestId('conversations')
      .getByText(/How do I count the words/)
      .waitFor();
  });

  test('the admin pages list users, keys, upstreams and the audit log', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByText(ADMIN, { exact: true }).first().waitFor();
    await screenshot(page, 'admin');
  });

  test('a second user sees none of the first user’s chats', async () => {
    await addUser(palisade, 'bob');
    const bob = await openPage(browser, { colorScheme: 'dark' });
    await bob.page.goto(palisade.url + '/');
    await bob.page.getByLabel('Username').fill('bob');
    await bob.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await bob.page.getByRole('button', { name: 'Sign in' }).click();
    await bob.page.getByRole('button', { name: 'New chat' }).waitFor();
    const list = bob.page.getByTestId('conversations');
    assert.equal(await list.getByText(/How do I count the words/).count(), 0);
    // Opening the first user's conversation by its address shows nothing of it.
    await bob.page.goto(adminConversationUrl);
    await bob.page.getByText('Cannot open this conversation').waitFor();
    await bob.page.getByText('no such conversation').waitFor();
    assert.equal(await bob.page.getByText(/Count the words/).count(), 0);
    await bob.page.getByRole('link', { name: 'Start a new chat' }).click();
    await bob.page.getByRole('textbox', { name: /message/i }).waitFor();
    await screenshot(bob.page, 'chat-dark');
    assert.deepEqual(bob.cspViolations, []);
    await bob.context.close();
  });

  test('the chat works at phone width', async () => {
    const phone = await openPage(browser, { width: 390, height: 844 });
    await phone.page.goto(palisade.url + '/');
    await phone.page.getByLabel('Username').fill('bob');
    await phone.page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await phone.page.getByRole('button', { name: 'Sign in' }).click();
    const composer = phone.page.getByRole('textbox', { name: /message/i });
    await composer.waitFor();
    const box = await composer.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, 'the composer fits the screen');
    await screenshot(phone.page, 'chat-phone');
    assert.deepEqual(phone.cspViolations, []);
    await phone.context.close();
  });

  test('no page raised a CSP violation', () => {
    assert.deepEqual(admin.cspViolations, []);
  });
});
