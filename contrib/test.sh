#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with the Rust toolchain:
# installs what the tests drive for real (nginx, rsync, gpg/gpgv, fuse3's
# mount helper, systemd-analyze for the unit in contrib/systemd, the
# python-simplestreams client in a venv, cargo-fuzz), fuzzes the parsers for
# a bounded time (contrib/fuzz.sh), then runs every test.
#
#   contrib/test.sh            # as root (or with sudo available)
#
# Environment: STREAMFS_FIXTURES (reference data, default ../shared/fixtures),
# STREAMFS_SSTREAM_VENV (venv of the reference client, default
# target/sstream-venv), CI=true (missing prerequisites fail instead of skip).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nginx rsync gnupg gpgv fuse3 systemd util-linux python3 python3-venv squashfs-tools ca-certificates g++ e2fsprogs ostree aria2 postgresql chromium curl mmdebstrap qemu-system-x86 xz-utils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

venv="${STREAMFS_SSTREAM_VENV:-$PWD/target/sstream-venv}"
if [ ! -x "$venv/bin/sstream-query" ]; then
    echo "creating the python-simplestreams venv in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q python-simplestreams requests pyyaml
fi
export STREAMFS_SSTREAM_VENV="$venv"
export STREAMFS_FIXTURES="${STREAMFS_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"

# Bounded fuzzing (contrib/fuzz.sh): cargo-fuzz on the stable toolchain,
# built once and kept in ~/.cargo/bin.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
contrib/fuzz.sh

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
