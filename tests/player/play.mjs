// Plays pages of the demo player in headless Chromium and prints, as one JSON line, what each
// saw: how far playback advanced, the player's errors and every segment's Cache-Status.
//
//   node tests/player/play.mjs --seconds 6 URL... [--then URL...]
//
// The URLs before --then play at once, each in its own page, until playback has advanced
// `--seconds` from where it started or 45 s have passed; then those after it. Chromium is
// Debian's /usr/bin/chromium (CHROMIUM overrides), started with the flags a closed network
// needs.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
let seconds = 6;
const phases = [[]];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--seconds") seconds = Number(args[++i]);
  else if (args[i] === "--then") phases.push([]);
  else phases[phases.length - 1].push(args[i]);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});

async function watch(url) {
  const page = await browser.newPage();
  const console = [];
  page.on("console", (message) => { if (message.type() === "error" || process.env.PLAYER_LOG) console.push(message.text()); });
  page.on("pageerror", (error) => console.push(String(error)));
  const started = Date.now();
  await page.goto(url);
  let first = null;
  let last = { currentTime: 0 };
  while (Date.now() - started < 45_000) {
    last = await page.evaluate(() => ({
      currentTime: document.getElementById("video").currentTime,
      errors: window.outpost.errors,
      player: window.outpost.player,
      rendition: document.getElementById("rendition").textContent,
      segments: window.outpost.segments,
    }));
    if (last.errors.length > 0) break;
    if (first === null && last.currentTime > 0) first = last.currentTime;
    if (first !== null && last.currentTime - first >= seconds) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await page.close();
  return {
    url,
    player: last.player,
    advanced: first === null ? 0 : last.currentTime - first,
    errors: last.errors || [],
    console,
    rendition: last.rendition,
    segments: last.segments || [],
    ms: Date.now() - started,
  };
}

const results = [];
try {
  for (const phase of phases) {
    results.push(await Promise.all(phase.map(watch)));
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + "\n");
