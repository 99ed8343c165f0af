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
# Wanted but not required: the fuzz targets (tests/fuzz/run.sh) skip without them. Installed
# when the distribution has them under these names.
OPTIONAL=(clang libclang-rt-dev)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: not a Debian/Ubuntu system (no dpkg-query); install by hand: ${PACKAGES[*]}" >&2
    echo "  (Debian names; elsewhere: a C compiler, autotools, libtool, pkg-config, libpq, libevent 2.1, Check, a PostgreSQL server and PgBouncer)" >&2
    exit 1
fi

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}
missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
for pkg in "${OPTIONAL[@]}"; do
    if ! installed "$pkg" && apt-cache show "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
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
# Optional packages the package lists did not know before the update.
for pkg in "${OPTIONAL[@]}"; do
    if ! installed "$pkg" && [[ " ${missing[*]} " != *" $pkg "* ]] && apt-cache show "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
        install+=("$pkg")
    fi
done
"${sudo[@]}" "${install[@]}"
echo "deps.sh: installed ${missing[*]}"
