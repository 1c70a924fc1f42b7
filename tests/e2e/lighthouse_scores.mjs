// Lighthouse's accessibility, best-practices and SEO scores of each URL given, as a phone
// (Lighthouse's default) and as a desktop (its desktop preset), each in a fresh headless Chromium.
// Prints JSON: {"lighthouse": version, "results": [{url, formFactor, scores, failing, ...}]}.
//
//   CHROME_PATH=/usr/bin/chromium node tests/e2e/lighthouse_scores.mjs http://127.0.0.1:8000/
import * as chromeLauncher from "chrome-launcher";
import lighthouse from "lighthouse";
import desktopConfig from "lighthouse/core/config/desktop-config.js";

const CATEGORIES = ["accessibility", "best-practices", "seo"];
const CHROME_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const FORM_FACTORS = { mobile: undefined, desktop: desktopConfig };

function failingAudits(lhr) {
  const failing = [];
  for (const [category, { auditRefs }] of Object.entries(lhr.categories)) {
    for (const ref of auditRefs) {
      const audit = lhr.audits[ref.id];
      if (ref.weight > 0 && audit.score !== null && audit.score < 1) {
        failing.push({ category, id: ref.id, title: audit.title, score: audit.score });
      }
    }
  }
  return failing;
}

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error("usage: node lighthouse_scores.mjs URL...");
  process.exit(2);
}
const results = [];
let version = null;
for (const url of urls) {
  for (const [formFactor, config] of Object.entries(FORM_FACTORS)) {
    // A fresh browser for each audit: one that has seen the site keeps its favicon, for one.
    const chrome = await chromeLauncher.launch({
      chromePath: process.env.CHROME_PATH || "/usr/bin/chromium",
      chromeFlags: CHROME_FLAGS,
    });
    const started = Date.now();
    try {
      const { lhr } = await lighthouse(
        url,
        { port: chrome.port, onlyCategories: CATEGORIES, logLevel: "error", output: "json" },
        config,
      );
      version = lhr.lighthouseVersion;
      results.push({
        url,
        formFactor,
        seconds: (Date.now() - started) / 1000,
        runtimeError: lhr.runtimeError ? lhr.runtimeError.message : null,
        scores: Object.fromEntries(
          Object.entries(lhr.categories).map(([id, category]) => [id, category.score]),
        ),
        failing: failingAudits(lhr),
      });
    } finally {
      await chrome.kill();
    }
  }
}
process.stdout.write(JSON.stringify({ lighthouse: version, results }, null, 2) + "\n");
