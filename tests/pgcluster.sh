#!/usr/bin/env bash
# pgcluster.sh: a throwaway PostgreSQL cluster for pgev's tests and demo.
#
#   pgcluster.sh start DIR            initdb into DIR/data, start it on a free port of 127.0.0.1
#                                     with its unix socket in DIR; print the DSN on stdout
#   pgcluster.sh stop DIR             stop every server under DIR (immediate) and remove DIR;
#                                     idempotent, succeeds when DIR is already gone
#   pgcluster.sh replica DIR [NAME]   pg_basebackup -R the primary into DIR/NAME (default
#                                     "replica"), start it as a hot standby, print its DSN;
#                                     without a pg_basebackup for the server, a low-level backup
#                                     through psql instead (see copy_backup)
#   pgcluster.sh server-stop DIR [NODE] [MODE]   stop one server (default node "primary",
#                                     mode "fast"; "immediate" simulates a crash), keep its data
#   pgcluster.sh server-start DIR [NODE]         start it again on the same port and socket
#   pgcluster.sh server-restart DIR [NODE]       restart it (fast mode), same port
#   pgcluster.sh runas DIR CMD [ARG...]          run CMD as the user that owns the cluster
#                                     (root cannot run postgres or pgbouncer), in DIR, with the
#                                     server binaries first on PATH
#   pgcluster.sh bindir               print the directory of the server binaries
#   pgcluster.sh tool NAME            print the client program NAME (psql, pg_basebackup) to use
#                                     with those servers, or fail saying why there is none
#   pgcluster.sh replica-method       print how "replica" makes a standby here, or fail
#   pgcluster.sh ssl DIR              give the running primary TLS and password logins (see
#                                     below); idempotent; prints the files it made on stdout
#   pgcluster.sh promote DIR NODE     promote a standby (pg_ctl promote, waits until it accepts
#                                     writes)
#   pgcluster.sh pgbouncer DIR [MODE] start PgBouncer (pool_mode MODE, default "transaction",
#                                     default_pool_size 2) on a free 127.0.0.1 port in front of
#                                     the primary; writes DIR/pgbouncer.dsn and prints it
#
# stop also kills the process of any DIR/NAME.pid file whose command line names DIR: a test
# that starts a helper (pgbouncer -d with its pidfile in DIR, a proxy) gets it cleaned up.
#
# Files in DIR: data/ (the primary), dsn (unix-socket DSN), dsn-tcp (127.0.0.1 DSN), port,
# server.log, user (the OS user the servers run as); a replica NAME has NAME/, NAME.dsn,
# NAME.dsn-tcp, NAME.port and NAME.log. The cluster's superuser is always "postgres"
# (initdb -U postgres), authentication is trust for local sockets and 127.0.0.1/::1,
# replication connections included.
#
# When run as root, the servers run as the "postgres" OS user if it exists, else as a system
# user "pgev" that is created on first use. DIR must then be reachable by that user: the
# default mktemp directories under /tmp are.
#
# ssl makes a throwaway CA (openssl) and a certificate for the server, signed by it, whose
# only name is "localhost" (so host=localhost hostaddr=127.0.0.1 passes sslmode=verify-full and
# any other host name fails it), plus a second, unrelated CA; turns ssl on; and adds two roles
# whose pg_hba lines come before the trust lines: "pgev_scram", with a random password stored
# as a SCRAM-SHA-256 verifier and authenticated with scram-sha-256 on 127.0.0.1, ::1 and the
# unix socket; and "pgev_tls_only", trusted over TLS (hostssl) and rejected without (hostnossl).
# Files: DIR/ssl/ca.crt, DIR/ssl/wrong-ca.crt, DIR/ssl/scram-password (the password, one
# line); the server's key is in its data directory, owned by the server user, mode 0600.
#
# Environment: PGEV_PGBIN overrides the server binary directory. A directory with only the
# servers (the libpq 18 rig of scripts/pg18-rig.sh has no psql and no pg_basebackup) borrows the
# distribution's client programs where their versions allow (see client_tool).
#
# Sourcing this file only defines pgcluster_* wrappers that run it as a separate process.

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    PGCLUSTER_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
    pgcluster_start() { bash "$PGCLUSTER_SH" start "$@"; }
    pgcluster_stop() { bash "$PGCLUSTER_SH" stop "$@"; }
    pgcluster_replica() { bash "$PGCLUSTER_SH" replica "$@"; }
    pgcluster_runas() { bash "$PGCLUSTER_SH" runas "$@"; }
    pgcluster_bindir() { bash "$PGCLUSTER_SH" bindir "$@"; }
    return 0
fi

set -euo pipefail

prog=pgcluster.sh
# Ports are chosen below the kernel's ephemeral range so outgoing connections never hold them.
PORT_MIN=15000
PORT_MAX=32000
START_TRIES=8

die() {
    echo "$prog: error: $*" >&2
    exit 1
}
note() { echo "$prog: $*" >&2; }

# --- server binaries -------------------------------------------------------------------------
find_bindir() {
    local d
    if [[ -n "${PGEV_PGBIN:-}" ]]; then
        [[ -x "$PGEV_PGBIN/initdb" ]] || die "PGEV_PGBIN=$PGEV_PGBIN has no initdb"
        echo "$PGEV_PGBIN"
        return
    fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n "$d" && -x "$d/initdb" ]]; then
            echo "$d"
            return
        fi
    fi
    # Debian/Ubuntu keep the server binaries out of PATH: take the highest installed version.
    d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1)
    if [[ -n "$d" ]]; then
        dirname "$d"
        return
    fi
    d=$(command -v initdb 2>/dev/null || true)
    if [[ -n "$d" ]]; then
        dirname "$d"
        return
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the postgresql package (bash scripts/deps.sh) or set PGEV_PGBIN"
}

# major_version PROGRAM: "15" from "psql (PostgreSQL) 15.18 (Debian ...)".
major_version() {
    "$1" --version 2>/dev/null | sed -n 's/^[^)]*) \([0-9][0-9]*\).*/\1/p'
}

# client_tool NAME: the client program NAME for the servers in $BIN: their own, else the
# distribution's (pg_config --bindir, /usr/lib/postgresql/*/bin newest first, PATH). Any psql
# runs the harness's setup SQL; pg_basebackup refuses servers newer than itself, so it must be
# at least the server's major version. Prints the path, or fails saying why there is none.
client_tool() {
    local name=$1 server cand major real seen=" " tried=""
    if [[ -x "$BIN/$name" ]]; then
        echo "$BIN/$name"
        return
    fi
    server=$(major_version "$BIN/postgres")
    for cand in "$(pg_config --bindir 2>/dev/null || true)" \
        $(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -rV) \
        "$(dirname "$(command -v "$name" 2>/dev/null || echo /nonexistent/x)")"; do
        [[ -n "$cand" && -x "$cand/$name" ]] || continue
        real=$(readlink -f "$cand/$name")
        [[ "$seen" != *" $real "* ]] || continue
        seen+="$real "
        major=$(major_version "$cand/$name")
        if [[ $name == pg_basebackup && -n "$server" && "${major:-0}" -lt "$server" ]]; then
            tried+="${tried:+, }$cand/$name is version ${major:-?}"
            continue
        fi
        echo "$cand/$name"
        return
    done
    die "no $name for PostgreSQL ${server:-?} (servers in $BIN)${tried:+: $tried; $name needs ${server:-?} or newer}"
}

# --- the OS user the servers run as ---------------------------------------------------------
# Prints the user name. Not root: the current user. Root: postgres, else pgev (created).
pick_user() {
    if [[ $(id -u) -ne 0 ]]; then
        id -un
        return
    fi
    if id -u postgres >/dev/null 2>&1; then
        echo postgres
        return
    fi
    if ! id -u pgev >/dev/null 2>&1; then
        # Two harnesses may race here under make -j; the loser's useradd fails harmlessly.
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --user-group pgev >/dev/null 2>&1 || true
        id -u pgev >/dev/null 2>&1 || die "could not create the system user 'pgev' (useradd)"
    fi
    echo pgev
}

# as USER CMD...: run CMD as USER (directly when that is us), from the cluster directory so a
# cwd the user cannot read (e.g. /root) causes no warnings.
as() {
    local user=$1
    shift
    if [[ "$user" == "$(id -un)" ]]; then
        (cd "$DIR" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$DIR" && runuser -u "$user" -- "$@")
    else
        (cd "$DIR" && setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@")
    fi
}

# --- node naming: "primary" is DIR/data with DIR/{port,dsn,server.log}; any other NAME is
# DIR/NAME with DIR/NAME.{port,dsn,log}.
node_datadir() { if [[ $1 == primary ]]; then echo "$DIR/data"; else echo "$DIR/$1"; fi; }
node_file() { # node_file NODE port|dsn|dsn-tcp|log
    if [[ $1 == primary ]]; then
        if [[ $2 == log ]]; then echo "$DIR/server.log"; else echo "$DIR/$2"; fi
    else
        echo "$DIR/$1.$2"
    fi
}

port_in_use() {
    # A listening socket accepts the connect; ss (when present) also sees sockets of other users.
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        return 0
    fi
    if command -v ss >/dev/null 2>&1 && ss -Htln "sport = :$1" 2>/dev/null | grep -q .; then
        return 0
    fi
    return 1
}

free_port() {
    local i port
    for ((i = 0; i < 200; i++)); do
        port=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % (PORT_MAX - PORT_MIN + 1)))
        if ! port_in_use "$port"; then
            echo "$port"
            return
        fi
    done
    die "no free TCP port found on 127.0.0.1 in $PORT_MIN-$PORT_MAX"
}

# set_port NODE PORT: record the port in the node's config and in DIR's files.
set_port() {
    local node=$1 port=$2 datadir
    datadir=$(node_datadir "$node")
    # postgresql.auto.conf is read last, so this wins over the copy a base backup carries.
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash
    as "$USER_" bash -c 'grep -v "^port *=" "$1/postgresql.auto.conf" > "$1/postgresql.auto.conf.tmp" || true
        echo "port = $2" >> "$1/postgresql.auto.conf.tmp"
        mv "$1/postgresql.auto.conf.tmp" "$1/postgresql.auto.conf"' _ "$datadir" "$port"
    echo "$port" >"$(node_file "$node" port)"
    echo "host=$DIR port=$port dbname=postgres user=postgres" >"$(node_file "$node" dsn)"
    echo "host=127.0.0.1 port=$port dbname=postgres user=postgres" >"$(node_file "$node" dsn-tcp)"
}

print_log_tail() {
    local log=$1
    if [[ -s "$log" ]]; then
        echo "---- last lines of $log ----" >&2
        tail -n 30 "$log" >&2
        echo "----" >&2
    fi
}

# pg_start NODE: start the node's server on its recorded port (pg_ctl -w waits until it accepts
# connections, or for a hot standby until it is consistent).
pg_start() {
    local node=$1 datadir log
    datadir=$(node_datadir "$node")
    log=$(node_file "$node" log)
    as "$USER_" "$BIN/pg_ctl" -D "$datadir" -l "$log" -w -t 60 start >/dev/null
}

# start_new NODE: start a freshly made node on a free port, retrying when another process took
# the port between the check and the bind (parallel test runs).
start_new() {
    local node=$1 try port log logsize
    log=$(node_file "$node" log)
    for ((try = 1; try <= START_TRIES; try++)); do
        port=$(free_port)
        set_port "$node" "$port"
        logsize=$(stat -c %s "$log" 2>/dev/null || echo 0)
        if pg_start "$node" 2>"$DIR/pg_ctl.err"; then
            rm -f "$DIR/pg_ctl.err"
            return 0
        fi
        # Only this attempt's part of the log tells why it failed.
        if tail -c +"$((logsize + 1))" "$log" 2>/dev/null |
            grep -q -e 'could not bind' -e 'Address already in use'; then
            note "port $port was taken, trying another"
            # Keep the log for the next try readable: mark the retry.
            echo "pgcluster.sh: retrying on another port" >>"$log"
            continue
        fi
        cat "$DIR/pg_ctl.err" >&2 || true
        print_log_tail "$log"
        die "could not start the PostgreSQL server ($node) in $DIR"
    done
    print_log_tail "$log"
    die "could not start the PostgreSQL server ($node): no usable port after $START_TRIES tries"
}

check_socket_path() {
    # sun_path holds 107 characters: DIR/.s.PGSQL.NNNNN must fit.
    if ((${#DIR} + 17 > 107)); then
        die "socket directory path too long (${#DIR} characters): $DIR; use a shorter DIR such as one from mktemp -d under /tmp"
    fi
}

cmd_start() {
    [[ -e "$DIR/data" ]] && die "$DIR/data already exists (stop the old cluster first: $prog stop $DIR)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    check_socket_path
    touch "$DIR/.pgcluster" # marks DIR as ours, so that stop may remove it
    USER_=$(pick_user)
    echo "$USER_" >"$DIR/user"
    chmod 755 "$DIR"
    if [[ "$USER_" != "$(id -un)" ]]; then
        chown -R "$USER_": "$DIR"
        as "$USER_" test -w "$DIR" ||
            die "$DIR is not writable by the server user '$USER_' (a parent directory is not searchable by it?); use a directory under /tmp"
    fi

    as "$USER_" test -x "$BIN/initdb" ||
        die "the server user '$USER_' cannot run $BIN/initdb (is a parent directory, such as /root, closed to it?)"
    if ! as "$USER_" "$BIN/initdb" -D "$DIR/data" -U postgres -E UTF8 --locale=C --no-sync \
        --auth=trust >"$DIR/initdb.log" 2>&1; then
        cat "$DIR/initdb.log" >&2
        die "initdb failed in $DIR/data"
    fi
    # Settings for a disposable, fast test server. The port lives in postgresql.auto.conf (see
    # set_port), so that plain pg_ctl restarts keep it.
    as "$USER_" tee -a "$DIR/data/postgresql.conf" >/dev/null <<EOF

# --- pgcluster.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
max_wal_senders = 10
wal_level = replica
hot_standby = on
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    start_new primary
    cat "$DIR/dsn"
}

# copy_backup NAME DATADIR: a base backup of the primary into DATADIR without pg_basebackup
# (when the only one here is older than the server: see client_tool), with PostgreSQL's low-level
# backup API in one psql session: a replication slot for NAME keeps the WAL from the start of the
# backup for the standby to stream, pg_backup_start, a copy of the primary's files (tar, which
# goes on when files change or vanish meanwhile; WAL and runtime files left out as
# pg_basebackup leaves them out), pg_backup_stop's label as backup_label. Then the settings
# pg_basebackup -R writes: standby.signal, primary_conninfo (and primary_slot_name).
copy_backup() {
    local name=$1 datadir=$2 primary psql x d slot
    primary=$(node_datadir primary)
    # Slot names take lower-case letters, digits and underscores only.
    slot=$(echo "pgcluster_$name" | tr 'A-Z-' 'a-z_')
    psql=$(client_tool psql)
    # Quoted for the shell that psql's \! runs.
    x=("'--exclude=./postmaster.pid'" "'--exclude=./postmaster.opts'")
    for d in pg_wal pg_replslot pg_dynshmem pg_notify pg_serial pg_snapshots pg_stat_tmp pg_subtrans base/pgsql_tmp; do
        x+=("'--exclude=./$d/*'")
    done
    as "$USER_" mkdir -m 700 "$datadir"
    as "$USER_" "$psql" -X -q -v ON_ERROR_STOP=1 -d "$(cat "$DIR/dsn")" <<EOF
SELECT pg_create_physical_replication_slot('$slot', true);
SELECT pg_backup_start('pgcluster.sh $name', true);
\\! tar -C '$primary' --warning=none --ignore-failed-read ${x[*]} -cf - . | tar -C '$datadir' -xf -
SELECT labelfile FROM pg_backup_stop(false) \\g (format=unaligned tuples_only=on) $datadir/backup_label
EOF
    [[ -s "$datadir/backup_label" && -f "$datadir/global/pg_control" ]] ||
        die "the low-level backup into $datadir is incomplete"
    as "$USER_" touch "$datadir/standby.signal"
    printf "primary_conninfo = 'host=%s port=%s user=postgres'\nprimary_slot_name = '%s'\n" \
        "$DIR" "$(cat "$DIR/port")" "$slot" | as "$USER_" tee -a "$datadir/postgresql.auto.conf" >/dev/null
}

# replica_method: how cmd_replica makes a standby here, or a failure saying why it cannot.
replica_method() {
    local tool
    if tool=$(client_tool pg_basebackup 2>/dev/null); then
        echo "pg_basebackup $tool"
        return
    fi
    tool=$(client_tool psql)
    echo "low-level backup with $tool ($(client_tool pg_basebackup 2>&1 | sed 's/^[^:]*: error: //'))"
}

cmd_replica() {
    local name=${1:-replica} datadir basebackup
    [[ "$name" =~ ^[A-Za-z0-9_-]+$ && "$name" != primary && "$name" != data ]] ||
        die "bad replica name: $name"
    [[ -f "$DIR/dsn" ]] || die "no cluster in $DIR (run: $prog start $DIR)"
    USER_=$(cat "$DIR/user")
    datadir=$(node_datadir "$name")
    [[ -e "$datadir" ]] && die "$datadir already exists"
    if ! basebackup=$(client_tool pg_basebackup 2>/dev/null); then
        if ! (copy_backup "$name" "$datadir") >"$DIR/$name.basebackup.log" 2>&1; then
            cat "$DIR/$name.basebackup.log" >&2
            die "the low-level backup into $datadir failed"
        fi
    elif ! as "$USER_" "$basebackup" -d "$(cat "$DIR/dsn")" -D "$datadir" -R -X stream \
        --checkpoint=fast --no-sync >"$DIR/$name.basebackup.log" 2>&1; then
        cat "$DIR/$name.basebackup.log" >&2
        die "pg_basebackup into $datadir failed"
    fi
    start_new "$name"
    cat "$(node_file "$name" dsn)"
}

cmd_server_stop() {
    local node=${1:-primary} mode=${2:-fast}
    USER_=$(cat "$DIR/user")
    as "$USER_" "$BIN/pg_ctl" -D "$(node_datadir "$node")" -m "$mode" -w -t 60 stop >/dev/null
}

cmd_server_start() {
    local node=${1:-primary}
    USER_=$(cat "$DIR/user")
    pg_start "$node" || {
        print_log_tail "$(node_file "$node" log)"
        die "could not start the PostgreSQL server ($node) in $DIR"
    }
}

cmd_promote() {
    local node=${1:-}
    [[ -n "$node" && "$node" != primary ]] || die "promote needs a standby's name"
    USER_=$(cat "$DIR/user")
    as "$USER_" "$BIN/pg_ctl" -D "$(node_datadir "$node")" -w -t 60 promote >/dev/null ||
        die "could not promote $node"
}

cmd_pgbouncer() {
    local mode=${1:-transaction} port try ini pgport i
    command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer not found (apt-get install pgbouncer)"
    [[ -f "$DIR/dsn" ]] || die "no cluster in $DIR (run: $prog start $DIR)"
    DIR=$(cd "$DIR" && pwd -P)
    USER_=$(cat "$DIR/user")
    pgport=$(cat "$DIR/port")
    ini=$DIR/pgbouncer.ini
    for ((try = 1; try <= START_TRIES; try++)); do
        port=$(free_port)
        printf '%s\n' \
            "[databases]" \
            "postgres = host=$DIR port=$pgport dbname=postgres user=postgres" \
            "[pgbouncer]" \
            "listen_addr = 127.0.0.1" \
            "listen_port = $port" \
            "unix_socket_dir =" \
            "auth_type = any" \
            "pool_mode = $mode" \
            "default_pool_size = 2" \
            "max_client_conn = 500" \
            "server_reset_query =" \
            "ignore_startup_parameters = extra_float_digits,options" \
            "pidfile = $DIR/pgbouncer.pid" \
            "logfile = $DIR/pgbouncer.log" >"$ini"
        chmod 644 "$ini"
        rm -f "$DIR/pgbouncer.pid"
        as "$USER_" pgbouncer -d -q "$ini" || die "pgbouncer did not start (see $DIR/pgbouncer.log)"
        for ((i = 0; i < 100; i++)); do
            if port_in_use "$port"; then
                echo "host=127.0.0.1 port=$port dbname=postgres user=postgres" >"$DIR/pgbouncer.dsn"
                cat "$DIR/pgbouncer.dsn"
                return 0
            fi
            if [[ -f "$DIR/pgbouncer.pid" ]] && ! kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
                break # it exited (the port was taken, say)
            fi
            sleep 0.1
        done
        note "pgbouncer did not listen on port $port, trying another"
        if [[ -f "$DIR/pgbouncer.pid" ]]; then
            kill "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true
        fi
    done
    die "could not start pgbouncer (see $DIR/pgbouncer.log)"
}

cmd_server_restart() {
    local node=${1:-primary}
    USER_=$(cat "$DIR/user")
    as "$USER_" "$BIN/pg_ctl" -D "$(node_datadir "$node")" -l "$(node_file "$node" log)" \
        -m fast -w -t 60 restart >/dev/null || {
        print_log_tail "$(node_file "$node" log)"
        die "could not restart the PostgreSQL server ($node) in $DIR"
    }
}

# Stop one data directory's server: pg_ctl immediate; if that fails and the postmaster is
# still alive, SIGKILL exactly that pid.
stop_datadir() {
    local datadir=$1 pid
    [[ -f "$datadir/postmaster.pid" ]] || return 0
    [[ -n "${BIN:-}" ]] || BIN=$( (find_bindir) 2>/dev/null || true)
    if [[ -n "$BIN" ]]; then
        as "$USER_" "$BIN/pg_ctl" -D "$datadir" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    [[ -f "$datadir/postmaster.pid" ]] || return 0
    pid=$(head -n 1 "$datadir/postmaster.pid" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q postgres; then
        note "pg_ctl stop failed; killing postmaster $pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

cmd_stop() {
    local d p cwd pid
    [[ -e "$DIR" ]] || return 0
    DIR=$(cd "$DIR" && pwd -P)
    if [[ ! -f "$DIR/.pgcluster" ]]; then
        # An empty directory (a start that failed at once) is simply removed.
        rmdir "$DIR" 2>/dev/null || die "$DIR was not made by $prog start; not removing it"
        return 0
    fi
    USER_=$(cat "$DIR/user" 2>/dev/null || id -un)
    id -u "$USER_" >/dev/null 2>&1 || USER_=$(id -un)
    # Helpers a test started for this cluster (pgbouncer -d, a proxy) that left a pid file
    # DIR/NAME.pid: kill that pid if its command line still names DIR (not a recycled pid).
    for p in "$DIR"/*.pid; do
        [[ -f "$p" ]] || continue
        pid=$(head -n 1 "$p" 2>/dev/null || true)
        if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$DIR"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for d in "$DIR"/*/; do
        d=${d%/}
        [[ -f "$d/PG_VERSION" ]] && stop_datadir "$d"
    done
    # Backends orphaned by a killed postmaster exit on their own soon, but do not wait for
    # them: kill the postgres processes still running in one of this cluster's data
    # directories (a backend's cwd is its data directory).
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null || true)
        if [[ "$cwd" == "$DIR"/* && -f "$cwd/PG_VERSION" ]] &&
            [[ $(cat "$p/comm" 2>/dev/null || true) == postgres ]]; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
    rm -rf "$DIR"
}

# The certificates live 10 years; the keys are 2048-bit RSA (quick to make, accepted by every
# OpenSSL security level that Debian and Ubuntu ship).
make_ca() { # make_ca NAME SUBJECT
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "$2" \
        -keyout "$DIR/ssl/$1.key" -out "$DIR/ssl/$1.crt" >/dev/null 2>&1 ||
        die "openssl could not make the $1 certificate"
    chmod 600 "$DIR/ssl/$1.key"
    chmod 644 "$DIR/ssl/$1.crt"
}

cmd_ssl() {
    local ssl data pw i psql
    [[ -f "$DIR/dsn" ]] || die "no cluster in $DIR (run: $prog start $DIR)"
    DIR=$(cd "$DIR" && pwd -P)
    ssl=$DIR/ssl
    USER_=$(cat "$DIR/user")
    data=$(node_datadir primary)
    if [[ ! -f "$ssl/ready" ]]; then
        command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"
        rm -rf "$ssl"
        mkdir -p "$ssl"
        chmod 755 "$ssl"
        make_ca ca "/CN=pgev throwaway test CA"
        make_ca wrong-ca "/CN=pgev unrelated CA"
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$ssl/server.key" -out "$ssl/server.csr" >/dev/null 2>&1 ||
            die "openssl could not make the server key"
        printf 'subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n' >"$ssl/server.ext"
        openssl x509 -req -in "$ssl/server.csr" -CA "$ssl/ca.crt" -CAkey "$ssl/ca.key" \
            -CAcreateserial -days 3650 -extfile "$ssl/server.ext" -out "$ssl/server.crt" \
            >/dev/null 2>&1 || die "openssl could not sign the server certificate"
        # The server refuses a key that others can read: owned by the server user, 0600.
        chmod 600 "$ssl/server.key"
        cp "$ssl/server.crt" "$ssl/server.key" "$data/"
        chmod 644 "$data/server.crt"
        chmod 600 "$data/server.key"
        [[ "$USER_" == "$(id -un)" ]] || chown "$USER_": "$data/server.crt" "$data/server.key"
        psql=$(client_tool psql)
        pw="pgevPW$(openssl rand -hex 12)"
        (umask 077 && echo "$pw" >"$ssl/scram-password")

        printf '\n# --- pgcluster.sh ssl ---\nssl = on\nssl_cert_file = %s\nssl_key_file = %s\npassword_encryption = %s\n' \
            "'server.crt'" "'server.key'" "'scram-sha-256'" |
            as "$USER_" tee -a "$data/postgresql.conf" >/dev/null
        # pg_hba.conf: the first matching line wins, so these go before initdb's trust lines.
        # shellcheck disable=SC2016 # $1 is expanded by the inner bash
        as "$USER_" bash -c '{
            echo "# --- pgcluster.sh ssl ---"
            echo "local     all  pgev_scram                  scram-sha-256"
            echo "host      all  pgev_scram     127.0.0.1/32 scram-sha-256"
            echo "host      all  pgev_scram     ::1/128      scram-sha-256"
            echo "hostssl   all  pgev_tls_only  127.0.0.1/32 trust"
            echo "hostnossl all  pgev_tls_only  127.0.0.1/32 reject"
            echo "local     all  pgev_tls_only               reject"
            cat "$1/pg_hba.conf"
        } > "$1/pg_hba.conf.tmp" && mv "$1/pg_hba.conf.tmp" "$1/pg_hba.conf"' _ "$data"
        printf '%s\n' "SET client_min_messages = warning;" \
            "SET password_encryption = 'scram-sha-256';" \
            "DROP ROLE IF EXISTS pgev_scram;" "DROP ROLE IF EXISTS pgev_tls_only;" \
            "CREATE ROLE pgev_scram LOGIN PASSWORD :'pw';" "CREATE ROLE pgev_tls_only LOGIN;" |
            as "$USER_" "$psql" -X -q -v ON_ERROR_STOP=1 -v pw="$pw" -d "$(cat "$DIR/dsn")" \
                >/dev/null || die "could not create the test roles"
        as "$USER_" "$BIN/pg_ctl" -D "$data" reload >/dev/null || die "pg_ctl reload failed"
        # The postmaster applies a reload asynchronously: wait until new sessions see it.
        for ((i = 0; i < 100; i++)); do
            if [[ $(as "$USER_" "$psql" -X -At -d "$(cat "$DIR/dsn")" -c 'SHOW ssl' \
                2>/dev/null) == on ]]; then
                break
            fi
            sleep 0.1
        done
        if ((i == 100)); then
            print_log_tail "$(node_file primary log)"
            die "the server did not turn ssl on after a reload"
        fi
        touch "$ssl/ready"
    fi
    echo "ca=$ssl/ca.crt"
    echo "wrong_ca=$ssl/wrong-ca.crt"
    echo "scram_user=pgev_scram"
    echo "scram_password_file=$ssl/scram-password"
    echo "tls_user=pgev_tls_only"
}

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    if [[ $cmd == bindir ]]; then
        find_bindir
        return
    fi
    if [[ $cmd == tool ]]; then
        [[ $# -eq 1 ]] || usage
        BIN=$(find_bindir)
        client_tool "$1"
        return
    fi
    if [[ $cmd == replica-method ]]; then
        BIN=$(find_bindir)
        replica_method
        return
    fi
    [[ $# -ge 1 && -n "$1" ]] || usage
    DIR=$1
    shift
    case $cmd in
    start | stop | replica | server-stop | server-start | server-restart | runas | ssl | promote | pgbouncer) ;;
    *) usage ;;
    esac
    # stop needs the binaries only if a server is still up (see stop_datadir).
    [[ $cmd == stop ]] || BIN=$(find_bindir)
    case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    replica) cmd_replica "$@" ;;
    server-stop) cmd_server_stop "$@" ;;
    server-start) cmd_server_start "$@" ;;
    server-restart) cmd_server_restart "$@" ;;
    ssl) cmd_ssl ;;
    promote) cmd_promote "$@" ;;
    pgbouncer) cmd_pgbouncer "$@" ;;
    runas)
        [[ $# -ge 1 ]] || usage
        DIR=$(cd "$DIR" && pwd -P)
        USER_=$(cat "$DIR/user")
        as "$USER_" env PATH="$BIN:$PATH" "$@"
        ;;
    esac
}

main "$@"
