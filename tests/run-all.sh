#!/usr/bin/env bash
# Runs every caretaker test on a fresh machine: installs what is missing, starts the real
# services the tests talk to (each tests/services/*.sh brings up one, on private sockets
# under a temp dir), checks formatting (rustfmt) and lints (clippy, warnings are errors),
# runs the whole suite, stops what it started.
#
# Usage: tests/run-all.sh [extra cargo test args]
# A required service that cannot start fails the run loudly (CI=true is set for the tests,
# so tests that need a service fail instead of skipping).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

export CI=true
export CARETAKER_TEST_TMP
CARETAKER_TEST_TMP=$(mktemp -d /tmp/caretaker-tests.XXXXXX)

# Services register their stop commands here; they run on any exit.
CLEANUP=()
cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" || true; done
  rm -rf "$CARETAKER_TEST_TMP" 2>/dev/null || true
}
trap cleanup EXIT

# Installs Debian packages that are missing (one apt-get update at most).
APT_UPDATED=
need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "run-all: installing ${missing[*]}" >&2
  if [ -z "$APT_UPDATED" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

fail() { echo "run-all: FATAL: $*" >&2; exit 1; }

# Formatting and lints first: they are cheap and fail fast.
echo "run-all: cargo fmt --check" >&2
cargo fmt --all --check
echo "run-all: cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "run-all: cargo doc -D warnings" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --document-private-items --quiet

for svc in "$here"/services/*.sh; do
  [ -e "$svc" ] || continue
  echo "run-all: starting $(basename "$svc" .sh)" >&2
  # shellcheck source=/dev/null
  source "$svc"
done

cargo test --workspace --no-fail-fast "$@"
