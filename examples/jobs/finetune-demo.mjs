#!/usr/bin/env node
// A simulated fine-tune and eval for Palisade's built-in "script" job template: it prints the
// `progress: N%` lines the launcher turns into a progress bar, and a falling loss.
// Copy it into the scripts folder (PALISADE_HOME/jobs/scripts) and run it from the dashboard,
// or with: palisade jobs run script --param script=finetune-demo.mjs --param epochs=3 --follow
//
// Options: --epochs N (default 3), --steps N per epoch (default 5), --step-ms N (default 100).
// On SIGTERM (a cancel, a timeout) it says so and exits with 143, as a real trainer would
// after saving a checkpoint.

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} needs a whole number above 0`);
    process.exit(2);
  }
  return value;
}

const epochs = option('epochs', 3);
const steps = option('steps', 5);
const stepMs = option('step-ms', 100);

process.on('SIGTERM', () => {
  console.log('received SIGTERM: saving a checkpoint and stopping');
  process.exit(143);
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

console.log(`fine-tune demo: ${epochs} epoch(s) of ${steps} step(s)`);
let loss = 2.5;
const total = epochs * steps;
for (let epoch = 1; epoch <= epochs; epoch++) {
  for (let step = 1; step <= steps; step++) {
    await sleep(stepMs);
    loss *= 0.9 + Math.random() * 0.05;
    const done = (epoch - 1) * steps + step;
    console.log(`epoch ${epoch} step ${step}/${steps} loss ${loss.toFixed(4)}`);
    console.log(`progress: ${Math.round((done / total) * 100)}%`);
  }
}
console.log(`eval: loss ${loss.toFixed(4)}, accuracy ${(1 - loss / 4).toFixed(3)}`);
console.log('done');
