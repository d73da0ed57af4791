#!/usr/bin/env node
// A native-`solc`-compatible front end for solc-js (npm `solc`, WASM build).
// py-solc-x (and so brownie and slither) call it as `solc-v0.8.37`; it answers
// only what they ask: --version, and --standard-json with the input on stdin.
// It must be reached through a symlink so Node resolves node_modules from here.
"use strict";
const fs = require("fs");
const path = require("path");

const args = process.argv.slice(2);

function versionText() {
  // Loading soljson costs ~0.3 s and --version is asked ~7 times per compile.
  const cache = path.join(__dirname, ".version-cache");
  const pkg = require("solc/package.json").version;
  try {
    const cached = fs.readFileSync(cache, "utf8");
    if (cached.startsWith(pkg + "\n")) return cached.slice(pkg.length + 1);
  } catch (_) { /* no cache yet */ }
  const full = require("solc").version().replace(".Emscripten.clang", "");
  const text = `solc, the solidity compiler commandline interface\nVersion: ${full}\n`;
  // Written aside and renamed: brownie and slither may start compiling at the
  // same moment (`make test` runs them side by side); a reader never sees half.
  const partial = `${cache}.${process.pid}`;
  try {
    fs.writeFileSync(partial, pkg + "\n" + text);
    fs.renameSync(partial, cache);
  } catch (_) { /* read-only is fine */ }
  return text;
}

function importResolver(roots) {
  return (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((root) => path.resolve(root, importPath));
    for (const candidate of candidates) {
      try {
        return { contents: fs.readFileSync(candidate, "utf8") };
      } catch (_) { /* try the next root */ }
    }
    return { error: `File not found: ${importPath}` };
  };
}

function main() {
  if (args.includes("--version")) {
    process.stdout.write(versionText());
    return 0;
  }
  if (!args.includes("--standard-json")) {
    const unknown = args.find((a) => a.startsWith("-")) || args[0] || "(none)";
    process.stderr.write(`unrecognised option '${unknown}'\n`);
    return 1;
  }
  const roots = [];
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--standard-json") continue;
    if (["--allow-paths", "--base-path", "--include-path"].includes(flag)) {
      for (const p of (args[++i] || "").split(",")) if (p) roots.push(path.resolve(p));
    } else {
      process.stderr.write(`unrecognised option '${flag}'\n`);
      return 1;
    }
  }
  roots.push(process.cwd());
  const input = fs.readFileSync(0, "utf8");
  const output = require("solc").compile(input, { import: importResolver(roots) });
  process.stdout.write(output);
  return 0;
}

// exitCode, not exit(): exit() cuts pipe output over 64 KiB.
process.exitCode = main();
