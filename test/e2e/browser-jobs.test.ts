/**
 * The Jobs tab of the Admin page in Chromium against a real Palisade: the built-in templates
 * and one from jobs.json, the form generated from its parameters, a refused parameter shown at
 * its field, a run whose log and progress arrive live, a cancelled run, phone width in the dark
 * theme, and no CSP violation or console error on the way.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserMissing, launchBrowser, openPage, type WatchedPage } from '../support/browser.js';
import { startPalisade, tempHome, type TestPalisade } from '../support/palisade.js';
import { addUser, FAST_SCRYPT_ENV, PASSWORD } from '../support/web.js';

const SCREENSHOTS =
  process.env.PALISADE_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'palisade-screenshots-'));
const ADMIN = 'ada';
const LOG_LINES = 80;

/*
 * The job (node -e, CommonJS): prints its arguments, enough lines to fill the log view and 25%;
 * then waits until the test creates GATES/<ticket>, prints 100% and ends. Waiting on a file
 * rather than a timer keeps the test free of timing guesses.
 */
const DEMO_SCRIPT = `
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const [gates, ticket, steps, mode, input, ...rest] = process.argv.slice(1);
console.log('hello from ' + ticket + ': mode=' + mode + ' steps=' + steps + ' input=' + require('node:path').basename(input));
console.log('rest=' + JSON.stringify(rest));
for (let i = 1; i <= ${LOG_LINES}; i += 1) console.log('line ' + i);
console.log('progress: 25%');
const timer = setInterval(() => {
  if (!existsSync(join(gates, ticket))) return;
  clearInterval(timer);
  console.log('progress: 100%');
  console.log('all done');
}, 20);
`;

function writeJobsFile(home: string): string {
  const gates = join(home, 'gates');
  mkdirSync(gates, { recursive: true });
  mkdirSync(join(home, 'data'), { recursive: true });
  writeFileSync(join(home, 'data', 'sample.txt'), 'sample data\n');
  const jobs = {
    folders: { data: 'data' },
    templates: [
      {
        name: 'demo',
        description: 'Prints progress, then waits for its ticket',
        command: process.execPath,
        args: ['-e', DEMO_SCRIPT, gates, '{ticket}', '{steps}', '{mode}', '{input}', '{note}'],
        params: {
          ticket: {
            type: 'string',
            pattern: '^[a-z0-9-]{1,32}$',
            maxLength: 32,
            description: 'Names the file the job waits for.',
          },
          steps: { type: 'integer', min: 1, max: 5, default: 2 },
          mode: { type: 'enum', values: ['fast', 'thorough'], default: 'fast' },
          input: { type: 'path', folder: 'data', default: 'sample.txt' },
          note: { type: 'string', pattern: '^[a-z ]{1,40}$', optional: true, flag: '--note' },
        },
        timeout: '5m',
      },
    ],
  };
  writeFileSync(join(home, 'jobs.json'), JSON.stringify(jobs, null, 2), { mode: 0o600 });
  return gates;
}

const missing = browserMissing();
if (missing !== undefined && process.env.CI) {
  test('Chromium is installed for the browser tests', () => assert.fail(missing));
}

describe('the Jobs tab in Chromium', { skip: missing && !process.env.CI ? missing : false }, () => {
  let palisade: TestPalisade;
  let browser: Browser;
  let admin: WatchedPage;
  let gates = '';
  let refusals = 0;

  before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const home = tempHome();
    gates = writeJobsFile(home);
    palisade = await startPalisade({ home, env: { ...FAST_SCRYPT_ENV } });
    await addUser(palisade, ADMIN, 'admin');
    browser = await launchBrowser();
    admin = await openPage(browser);
  });

  after(async () => {
    await browser?.close();
    await palisade?.close();
  });

  async function signIn(page: Page) {
    await page.goto(palisade.url + '/');
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('textbox', { name: /message/i }).waitFor();
  }

  const detail = (page: Page) => page.getByTestId('job-run');
  const log = (page: Page) => detail(page).getByTestId('job-log');

  // Locators rather than waitForFunction: the page's CSP forbids the eval it would need.
  async function waitForLog(page: Page, text: string) {
    await log(page).filter({ hasText: text }).waitFor();
  }

  async function waitForProgress(page: Page, value: string) {
    await detail(page).locator(`[data-testid="job-progress"][value="${value}"]`).waitFor();
  }

  test('an admin opens Admin → Jobs and sees the built-in and jobs.json templates', async () => {
    const { page } = admin;
    await signIn(page);
    await page.getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('tab', { name: 'Jobs' }).click();
    const template = (name: string) =>
      page.locator(`[data-testid="job-template"][data-template="${name}"]`);
    await template('demo').waitFor();
    for (const name of ['model-download', 'script']) {
      assert.equal(await template(name).getByText('built-in').count(), 1, name);
    }
    assert.equal(await template('demo').getByText('built-in').count(), 0);
    assert.match(await template('demo').innerText(), /Prints progress/);
    // jobs.json is fine: no warning.
    assert.equal(await page.getByTestId('jobs-file-error').count(), 0);
    await page.getByText('No runs yet.').waitFor();
  });

  test('the form is generated from the template’s parameters, defaults filled in', async () => {
    const { page } = admin;
    await page.locator('[data-template="demo"]').click();
    assert.equal(await page.locator('[data-template="demo"]').getAttribute('aria-pressed'), 'true');
    const form = page.getByTestId('job-form');
    await form.waitFor();

    const steps = form.getByLabel('steps', { exact: true });
    assert.equal(await steps.getAttribute('type'), 'number');
    assert.equal(await steps.getAttribute('min'), '1');
    assert.equal(await steps.getAttribute('max'), '5');
    assert.equal(await steps.inputValue(), '2');

    const mode = form.getByLabel('mode', { exact: true });
    assert.equal(await mode.evaluate((element) => element.tagName), 'SELECT');
    assert.deepEqual(
      await mode
        .locator('option')
        .evaluateAll((options) =>
          options.map((option) => (option as unknown as { value: string }).value),
        ),
      ['fast', 'thorough'],
    );
    assert.equal(await mode.inputValue(), 'fast');

    const ticket = form.getByLabel('ticket', { exact: true });
    assert.equal(await ticket.getAttribute('type'), 'text');
    assert.equal(await ticket.inputValue(), '');
    const ticketField = form.locator('[data-param="ticket"]');
    assert.match(await ticketField.innerText(), /\^\[a-z0-9-\]\{1,32\}\$/);
    assert.match(await ticketField.innerText(), /Names the file the job waits for/);

    const input = form.getByLabel(/^input in folder data/);
    assert.equal(await input.inputValue(), 'sample.txt');
    assert.match(await form.locator('[data-param="input"]').innerText(), /data\//);

    const note = form.getByLabel(/^note \(optional\)/);
    assert.equal(await note.inputValue(), '');
    // Nothing else is marked optional.
    assert.equal(await form.getByText('(optional)').count(), 1);
  });

  test('bad parameters show the server’s errors next to their fields', async () => {
    const { page } = admin;
    const form = page.getByTestId('job-form');
    await form.getByLabel('ticket', { exact: true }).fill('Bad Ticket; rm -rf /');
    await form.getByLabel('steps', { exact: true }).fill('9');
    await form.getByLabel(/^input in folder data/).fill('../jobs.json');
    const [response] = await Promise.all([
      page.waitForResponse(
        (answer) =>
          answer.url().endsWith('/api/admin/jobs/runs') && answer.request().method() === 'POST',
      ),
      form.getByRole('button', { name: 'Run' }).click(),
    ]);
    refusals += 1;
    assert.equal(response.status(), 400);
    const body = (await response.json()) as {
      error: { code: string; details: { param: string; message: string }[] };
    };
    assert.equal(body.error.code, 'invalid_params');
    const named = body.error.details.map((detail) => detail.param).sort();
    assert.deepEqual(named, ['input', 'steps', 'ticket']);
    for (const detail of body.error.details) {
      const field = form.locator(`[data-param="${detail.param}"]`);
      const error = field.getByTestId('job-param-error');
      await error.waitFor();
      assert.equal((await error.innerText()).toLowerCase(), detail.message.toLowerCase());
      assert.equal(await field.locator('.input').getAttribute('aria-invalid'), 'true');
    }
    // Fields the server did not name carry no error; the form says what happened.
    assert.equal(
      await form.locator('[data-param="mode"] [data-testid="job-param-error"]').count(),
      0,
    );
    await form
      .getByRole('alert')
      .filter({ hasText: /refused 3 parameters/ })
      .waitFor();
    // The first field named has the focus, and nothing ran.
    assert.equal(await page.evaluate('document.activeElement?.id'), 'adm-job-demo-ticket');
    assert.equal(await page.getByTestId('job-run-row').count(), 0);
    await page.screenshot({ path: join(SCREENSHOTS, 'jobs-invalid.png'), fullPage: true });
  });

  test('a run shows its log and progress live, follows the log, and ends as succeeded', async () => {
    const { page } = admin;
    const form = page.getByTestId('job-form');
    await form.getByLabel('ticket', { exact: true }).fill('first');
    await form.getByLabel('steps', { exact: true }).fill('3');
    await form.getByLabel('mode', { exact: true }).selectOption('thorough');
    await form.getByLabel(/^input in folder data/).fill('sample.txt');
    await form.getByLabel(/^note \(optional\)/).fill('hello there');
    await form.getByRole('button', { name: 'Run' }).click();
    assert.equal(await form.getByTestId('job-param-error').count(), 0);

    // Live: the first lines and 25% arrive while the job still waits for its ticket.
    await detail(page).waitFor();
    await waitForLog(page, 'hello from first: mode=thorough steps=3 input=sample.txt');
    await waitForLog(page, 'rest=["--note","hello there"]');
    await waitForLog(page, `line ${LOG_LINES}`);
    await waitForProgress(page, '25');
    await page.locator('[data-testid="job-run"][data-status="running"]').waitFor();
    assert.equal(await detail(page).getByTestId('job-status').innerText(), 'Running');
    const row = page.locator('[data-testid="job-run-row"]').first();
    assert.equal(await row.getAttribute('data-status'), 'running');
    assert.match(await row.innerText(), /ada/);
    assert.match(await row.innerText(), /ticket=first/);

    // The log is scrolled to its end while new lines come in.
    const gap = () =>
      log(page).evaluate(
        (element) => element.scrollHeight - element.scrollTop - element.clientHeight,
      );
    assert.ok(
      await log(page).evaluate((element) => element.scrollHeight > element.clientHeight),
      'the log overflows its box',
    );
    assert.ok((await gap()) < 24, 'the log follows its end');
    await page.screenshot({ path: join(SCREENSHOTS, 'jobs-running.png'), fullPage: true });

    // Scrolled up to read, it stays put when more arrives, and offers a way back.
    await log(page).evaluate((element) => {
      element.scrollTop = 0;
      element.dispatchEvent(new Event('scroll'));
    });
    await detail(page).getByRole('button', { name: 'Jump to the end' }).waitFor();
    writeFileSync(join(gates, 'first'), '');
    await waitForLog(page, 'all done');
    await waitForProgress(page, '100');
    await page.locator('[data-testid="job-run"][data-status="succeeded"]').waitFor();
    assert.equal(await log(page).evaluate((element) => element.scrollTop), 0);
    await detail(page).getByRole('button', { name: 'Jump to the end' }).click();
    assert.ok((await gap()) < 24);

    assert.equal(await detail(page).getByTestId('job-status').innerText(), 'Succeeded');
    assert.equal(await detail(page).getByTestId('job-exit').innerText(), 'code 0');
    assert.equal(await detail(page).getByTestId('job-log-state').innerText(), 'Complete');
    assert.equal(await detail(page).getByRole('button', { name: 'Cancel run' }).count(), 0);
    await page.locator('[data-testid="job-run-row"][data-status="succeeded"]').waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'jobs-succeeded.png'), fullPage: true });
  });

  test('a long run is cancelled from its page', async () => {
    const { page } = admin;
    const form = page.getByTestId('job-form');
    await form.getByLabel('ticket', { exact: true }).fill('never');
    await form.getByLabel(/^note \(optional\)/).fill('');
    await form.getByRole('button', { name: 'Run' }).click();
    await waitForLog(page, 'hello from never');
    await waitForLog(page, 'rest=[]');
    await waitForProgress(page, '25');
    await page.locator('[data-testid="job-run"][data-status="running"]').waitFor();
    await detail(page).getByRole('button', { name: 'Cancel run' }).click();
    await page.locator('[data-testid="job-run"][data-status="cancelled"]').waitFor();
    assert.equal(await detail(page).getByTestId('job-status').innerText(), 'Cancelled');
    assert.match(await detail(page).getByTestId('job-reason').innerText(), /cancel/i);
    assert.equal(await detail(page).getByRole('button', { name: 'Cancel run' }).count(), 0);
    const rows = page.getByTestId('job-run-row');
    await page.locator('[data-testid="job-run-row"][data-status="cancelled"]').waitFor();
    assert.equal(await rows.count(), 2);
    // Newest first.
    assert.equal(await rows.first().getAttribute('data-status'), 'cancelled');
    assert.equal(await rows.nth(1).getAttribute('data-status'), 'succeeded');
  });

  test('a finished run’s log opens again from the table', async () => {
    const { page } = admin;
    await page
      .getByTestId('job-run-row')
      .nth(1)
      .getByRole('button', { name: /^Open run/ })
      .click();
    await page.locator('[data-testid="job-run"][data-status="succeeded"]').waitFor();
    await waitForLog(page, 'all done');
    // Each line once, even though the stream started over.
    const text = (await log(page).textContent()) ?? '';
    assert.equal(text.split('\n').filter((line) => line === `line ${LOG_LINES}`).length, 1);
  });

  test('the Jobs tab works at phone width in the dark theme', async () => {
    const phone = await openPage(browser, { width: 390, height: 844, colorScheme: 'dark' });
    const { page } = phone;
    await signIn(page);
    await page.goto(palisade.url + '/admin');
    await page.getByRole('tab', { name: 'Jobs' }).click();
    await page.locator('[data-template="demo"]').click();
    await page.getByTestId('job-form').waitFor();
    await page
      .getByTestId('job-run-row')
      .first()
      .getByRole('button', { name: /^Open run/ })
      .click();
    await waitForLog(page, 'hello from never');
    const fits = async (selector: string) => {
      const boxes = await page.locator(selector).evaluateAll((elements) =>
        elements.map((element) => {
          const box = element.getBoundingClientRect();
          return { left: box.left, right: box.right };
        }),
      );
      assert.ok(boxes.length > 0, selector);
      for (const box of boxes) {
        assert.ok(
          box.left >= 0 && box.right <= 390,
          `${selector} fits the screen: ${JSON.stringify(box)}`,
        );
      }
    };
    await fits('[data-testid="job-template"]');
    await fits('[data-testid="job-form"] .input');
    await fits('[data-testid="job-log"]');
    await fits('[data-testid="job-run"] .btn');
    // No sideways scrolling of the page itself (the runs table scrolls in its own box).
    const scroller = await page
      .locator('.page-scroll')
      .evaluate((element) => element.scrollWidth - element.clientWidth);
    assert.equal(scroller, 0);
    // The dark theme's colours are in use.
    const background = await page.evaluate(
      `getComputedStyle(document.querySelector('[data-testid="job-log"]')).backgroundColor`,
    );
    assert.equal(background, 'rgb(21, 24, 28)');
    await page.screenshot({ path: join(SCREENSHOTS, 'jobs-phone-dark.png'), fullPage: true });
    assert.deepEqual(phone.cspViolations, []);
    assert.deepEqual(phone.problems, []);
    await phone.context.close();
  });

  test('no CSP violation and no console error but the refused run’s 400', () => {
    assert.deepEqual(admin.cspViolations, []);
    const unexpected = admin.problems.filter(
      (text) => !/Failed to load resource: the server responded with a status of 400/.test(text),
    );
    assert.deepEqual(unexpected, []);
    assert.ok(admin.problems.length <= refusals);
  });
});
