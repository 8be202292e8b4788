#!/usr/bin/env bash
# Installs the OpenAPI contract tools (Spectral + OWASP ruleset, Redocly, openapi-typescript,
# openapi-fetch; pinned in .ci/openapi-tools/) into a cache folder outside the project, where
# test/openapi-contract*.test.ts find them. They are large and only check the document, so they are
# no dependency of the service. Re-runs are no-ops until the pinned versions change.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${OPENAPI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/api-service-template/openapi-tools}"
mkdir -p "$dir"
if ! cmp -s "$root/.ci/openapi-tools/package-lock.json" "$dir/package-lock.json" || [ ! -d "$dir/node_modules" ]; then
  cp "$root/.ci/openapi-tools/package.json" "$root/.ci/openapi-tools/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "$dir"
