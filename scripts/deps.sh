#!/usr/bin/env bash
# deps.sh: install what pgev needs to build, test and run its demo on Debian or Ubuntu.
# Does nothing when everything is installed already. Needs root or passwordless sudo to
# install; otherwise prints the command to run and fails.
#
# The sanitizer runtimes (libasan, libubsan) come with gcc from build-essential.
# Installing the postgresql package may start a system cluster; pgev's scripts never use it,
# they start their own throwaway clusters (tests/pgcluster.sh).
set -euo pipefail

PACKAGES=(
    build-essential autoconf automake libtool pkg-config # toolchain and autotools
    libpq-dev libevent-dev check                         # libraries (check: unit tests)
    postgresql pgbouncer                                 # servers for tests and the demo
    openssl                                              # throwaway CA and certificates (TLS tests)
)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: not a Debian/Ubuntu system (no dpkg-query); install by hand: ${PACKAGES[*]}" >&2
    echo "  (Debian names; elsewhere: a C compiler, autotools, libtool, pkg-config, libpq, libevent 2.1, Check, a PostgreSQL server and PgBouncer)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps.sh: all dependencies are installed"
    exit 0
fi

echo "deps.sh: missing packages: ${missing[*]}"
install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "deps.sh: need root to install them; run:" >&2
    echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

"${sudo[@]}" apt-get update
"${sudo[@]}" "${install[@]}"
echo "deps.sh: installed ${missing[*]}"
