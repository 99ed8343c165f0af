#!/usr/bin/env bash
# pgcluster.sh: the old name of tools/pgev-testdb, the throwaway-server helper that
# `make install` installs (see its header for the commands: start DIR, stop DIR, replica DIR,
# server-restart DIR, ssl DIR, pgbouncer DIR, runas DIR CMD, ...). One implementation: this
# only runs it. Sourcing this file defines the pgcluster_* wrappers, as before.
PGEV_TESTDB_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)/pgev-testdb
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # shellcheck disable=SC1090,SC1091 # tools/pgev-testdb
    source "$PGEV_TESTDB_SH"
    return 0
fi
exec bash "$PGEV_TESTDB_SH" "$@"
