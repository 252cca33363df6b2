#!/bin/sh
# deps.sh: install what tokend needs to build, run and test, if missing.
# Debian 12 packages through apt-get (as root; otherwise print the command),
# chromium among them (the console's browser tests drive /usr/bin/chromium),
# then the end-to-end suite's npm packages from tests/e2e/package-lock.json.
# Quick when everything is there: it only asks dpkg.
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential pkg-config libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
libssl-dev libsqlite3-dev libpq-dev libinih-dev libgfshare-dev libgnutls28-dev libargon2-dev openssl postgresql sqlite3 curl nodejs npm wrk clang
chromium"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# A Node.js that did not come from Debian (nodesource, nvm) is fine too.
case " $missing " in *" nodejs "*|*" npm "*)
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed -e 's/ nodejs//' -e 's/ npm//')
  fi ;;
esac

if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run:  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

# The suite needs Node >= 20.19, not only a `node`: an older one (Debian 12
# ships 18), or TOKEND_FORCE_NODE_INSTALL=1, gets a pinned Node 22 from npm
# in build/node (scripts/node.sh), which `make test` then runs the suite on.
node=$(scripts/node.sh --install)
echo "deps: the end-to-end suite runs on $node ($("$node" --version))"

# The end-to-end suite's packages, pinned by package-lock.json, installed
# by npm running on that node.
if [ -f tests/e2e/package-lock.json ]; then
  if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
    echo "deps: installing the end-to-end suite's npm packages"
    (cd tests/e2e && PATH="$(dirname "$node"):$PATH" npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
