#!/usr/bin/env bash
# A fork's first act, end to end: in a scratch copy of the project, `npm run rm:resource -- items`;
# then lint, typecheck and the whole remaining suite must pass, test/fork.test.ts included (without
# items it scaffolds a resource and removes that instead). Run by .ci/run and the GitHub workflow.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$root"
# The project's files as a checkout has them (tracked and new, never ignored), dependencies linked.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
  if [ -e "$file" ]; then cp --parents -- "$file" "$scratch/"; fi
done
ln -s "$root/node_modules" "$scratch/node_modules"
git -C "$scratch" init -q

cd "$scratch"
npm run --silent rm:resource -- items
npm run lint
npm run typecheck
npm test
