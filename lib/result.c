/*
 * Result accessors: status, error, the PGresult, command tag and counts.
 * The typed field accessors live in types.c.
 */
#include "pgev-internal.h"

#include <stdlib.h>
#include <string.h>

int
pgev_result_status(const pgev_result *res)
{
    return res ? res->status : PGEV_EINVAL;
}

const pgev_error *
pgev_result_error(const pgev_result *res)
{
    return res ? res->error : NULL;
}

PGresult *
pgev_result_pg(const pgev_result *res)
{
    return res ? res->pg : NULL;
}

PGresult *
pgev_result_steal(pgev_result *res)
{
    if (!res || res->shared_pg)
        return NULL;
    PGresult *pg = res->pg;
    res->pg = NULL;
    return pg;
}

int64_t
pgev_result_query_id(const pgev_result *res)
{
    return res ? res->query_id : 0;
}

const char *
pgev_result_command(const pgev_result *res)
{
    if (!res || !res->tag_source)
        return "";
    return PQcmdStatus(res->tag_source);
}

int64_t
pgev_result_rows_affected(const pgev_result *res)
{
    if (!res || !res->tag_source)
        return -1;
    const char *n = PQcmdTuples(res->tag_source);
    if (!n || !n[0])
        return -1;
    return strtoll(n, NULL, 10);
}

int64_t
pgev_result_rows(const pgev_result *res)
{
    return res ? res->rows : 0;
}

int
pgev_result_sent(const pgev_result *res)
{
    return res && !res->unsent ? 1 : 0;
}

int
pgev_result_column(const pgev_result *res, const char *name)
{
    if (!res || !res->pg || !name)
        return PGEV_EINVAL;
    int found = PGEV_EINVAL;
    int ncols = PQnfields(res->pg);
    for (int col = 0; col < ncols; col++) {
        const char *fname = PQfname(res->pg, col);
        if (fname && strcmp(fname, name) == 0) {
            if (found >= 0)
                return PGEV_EINVAL; /* ambiguous */
            found = col;
        }
    }
    return found;
}
