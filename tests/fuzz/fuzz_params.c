/*
 * libFuzzer target: the pgev_params builder (lib/types.c).
 *
 * The input is a program: each byte picks a pgev_params_* call, and the
 * bytes after it give that call's argument (8 bytes for a number, 16 for a
 * uuid, a length byte and that many bytes for bytea, a NUL-terminated
 * string for text, numeric and json; 19 bytes for an inet, 16 for an
 * interval; for an array, a count byte, a NULL mask
 * byte and the elements). After the program, pgev_params_apply()
 * fills a pgev_query_args, and every array parameter is decoded again with
 * pgev_result_get_array() (as the server would send it back, in the same
 * format), which must give the same elements. The target checks the builder's promises: at
 * most PGEV_PARAMS_MAX parameters, a failed call adds nothing and makes
 * apply fail (sticky errors), and every parameter apply hands out can be
 * read in full: binary values for their length, text values up to their
 * NUL (ASan sees any overrun).
 */
#include "pgev-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_params: broken promise: %s\n", what);
        abort();
    }
}

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static uint64_t
take_u64(reader *r)
{
    uint64_t v = 0;
    size_t n = r->left < 8 ? r->left : 8;
    memcpy(&v, r->p, n);
    r->p += n;
    r->left -= n;
    return v;
}

/* Copies a NUL-terminated string out of the input into its own heap block
 * (so that ASan guards its end); *s is NULL when the input ran out. */
static char *
take_string(reader *r)
{
    const uint8_t *nul = memchr(r->p, 0, r->left);
    size_t n = nul ? (size_t)(nul - r->p) : r->left;
    char *s = malloc(n + 1);
    check(s != NULL, "malloc");
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += nul ? n + 1 : n;
    r->left -= nul ? n + 1 : n;
    return s;
}

static size_t
take_byte(reader *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

/* What an array step added, to compare with what decoding it gives back. */
typedef struct array_step {
    int index;        /* parameter number */
    int kind;         /* 0 int8, 1 text, 2 numeric, 3 bytea, 4 date, 5 float8 */
    size_t n;
    bool nulls[16];
    int64_t i64[16];
    double f8[16];
    char *strs[16];   /* text, numeric, bytea (owned by the owned list) */
    size_t lens[16];
} array_step;

/* An array step: count (0..16), NULL mask, then the elements. */
static int
add_array(pgev_params *p, reader *r, int kind, array_step *st, void **owned, int *nowned)
{
    size_t n = take_byte(r) % 17;
    unsigned mask = (unsigned)(take_byte(r) | take_byte(r) << 8);
    st->kind = kind;
    st->n = n;
    for (size_t i = 0; i < n; i++) {
        st->nulls[i] = mask >> i & 1;
        if (kind == 0 || kind == 4 || kind == 5) {
            uint64_t v = take_u64(r);
            st->i64[i] = (int64_t)v;
            memcpy(&st->f8[i], &v, sizeof v);
        } else if (kind == 3) {
            size_t len = take_byte(r) % 8;
            if (len > r->left)
                len = r->left;
            char *b = malloc(len + 1);
            check(b != NULL, "malloc");
            memcpy(b, r->p, len);
            r->p += len;
            r->left -= len;
            owned[(*nowned)++] = b;
            st->strs[i] = st->nulls[i] ? NULL : b;
            st->lens[i] = len;
        } else {
            char *s = take_string(r);
            owned[(*nowned)++] = s;
            st->strs[i] = st->nulls[i] ? NULL : s;
            st->lens[i] = strlen(s);
        }
    }
    switch (kind) {
    case 0: return pgev_params_int8_array(p, st->i64, st->nulls, n);
    case 1: return pgev_params_text_array(p, (const char *const *)st->strs, n);
    case 2: return pgev_params_numeric_array(p, (const char *const *)st->strs, n);
    case 3: return pgev_params_bytea_array(p, (const void *const *)st->strs, st->lens, n);
    case 4: {
        int32_t days[16];
        for (size_t i = 0; i < n; i++)
            days[i] = (int32_t)st->i64[i];
        return pgev_params_date_array(p, days, st->nulls, n);
    }
    default: return pgev_params_float8_array(p, st->f8, st->nulls, n);
    }
}

/* Decodes parameter st->index as a result field would hold it. */
static void
decode_back(const pgev_query_args *args, const array_step *st)
{
    int i = st->index;
    PGresult *pg = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    check(pg != NULL, "PQmakeEmptyPGresult");
    bool binary = args->param_formats[i] == 1;
    int len = binary ? args->param_lengths[i] : (int)strlen(args->param_values[i]);
    PGresAttDesc attr = { .name = (char *)"a", .format = binary, .typid = args->param_types[i],
                          .typlen = -1, .atttypmod = -1 };
    check(PQsetResultAttrs(pg, 1, &attr) &&
              PQsetvalue(pg, 0, 0, (char *)args->param_values[i], len),
          "PQsetvalue");
    pgev_result res = { .status = PGEV_OK, .pg = pg, .tag_source = pg, .rows = 1 };
    pgev_array *a = NULL;
    int rc = pgev_result_get_array(&res, 0, 0, &a);
    check(rc == PGEV_OK || rc == PGEV_ENOMEM, "an encoded array decodes");
    if (rc != PGEV_OK) {
        PQclear(pg);
        return;
    }
    check(pgev_array_count(a) == st->n, "the same number of elements");
    for (size_t k = 0; k < st->n; k++) {
        bool is_null = st->kind == 1 || st->kind == 2 || st->kind == 3 ? st->strs[k] == NULL
                                                                        : st->nulls[k];
        check(pgev_array_is_null(a, k) == (is_null ? 1 : 0), "the same NULL elements");
        if (is_null)
            continue;
        int64_t v;
        int32_t days;
        double d;
        const char *t;
        size_t tlen;
        char buf[64];
        switch (st->kind) {
        case 0:
            check(pgev_array_get_int64(a, k, &v) == PGEV_OK && v == st->i64[k], "int8 element");
            break;
        case 1:
            check(pgev_array_get_text(a, k, &t, &tlen) == PGEV_OK && tlen == st->lens[k] &&
                      memcmp(t, st->strs[k], tlen) == 0,
                  "text element");
            break;
        case 2:
            /* Text format: the element comes back as the server would read it. */
            check(pgev_array_get_text(a, k, &t, &tlen) == PGEV_OK && tlen == st->lens[k] &&
                      memcmp(t, st->strs[k], tlen) == 0,
                  "numeric element text");
            break;
        case 3:
            check(pgev_array_get_bytea(a, k, buf, sizeof buf, &tlen) == PGEV_OK &&
                      tlen == st->lens[k] && memcmp(buf, st->strs[k], tlen) == 0,
                  "bytea element");
            break;
        case 4:
            check(pgev_array_get_date(a, k, &days) == PGEV_OK && days == (int32_t)st->i64[k],
                  "date element");
            break;
        default:
            check(pgev_array_get_double(a, k, &d) == PGEV_OK &&
                      memcmp(&d, &st->f8[k], sizeof d) == 0,
                  "float8 element, bit for bit");
            break;
        }
    }
    pgev_array_free(a);
    PQclear(pg);
}

/* An inet, cidr or interval parameter decodes as a result field of its type. */
static void
decode_scalar_back(const pgev_query_args *args, int i)
{
    PGresult *pg = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    check(pg != NULL, "PQmakeEmptyPGresult");
    PGresAttDesc attr = { .name = (char *)"v", .format = 1, .typid = args->param_types[i],
                          .typlen = -1, .atttypmod = -1 };
    check(PQsetResultAttrs(pg, 1, &attr) &&
              PQsetvalue(pg, 0, 0, (char *)args->param_values[i], args->param_lengths[i]),
          "PQsetvalue");
    pgev_result res = { .status = PGEV_OK, .pg = pg, .tag_source = pg, .rows = 1 };
    pgev_inet in;
    pgev_interval iv;
    if (args->param_types[i] == 1186) {
        check(pgev_result_get_interval(&res, 0, 0, &iv) == PGEV_OK &&
                  args->param_lengths[i] == 16,
              "an interval parameter decodes");
    } else {
        check(pgev_result_get_inet(&res, 0, 0, &in) == PGEV_OK &&
                  in.is_cidr == (args->param_types[i] == 650),
              "an inet/cidr parameter decodes as what it was");
    }
    PQclear(pg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = { data, size };
    pgev_params p;
    pgev_params_init(&p);
    /* Strings and bytes are borrowed until apply: keep them (one per
     * step at most, and steps are capped below the array's size). */
    void *owned[256 + 200 * 16];
    int nowned = 0;
    array_step arrays[PGEV_PARAMS_MAX];
    int narrays = 0;
    bool failed = false;
    int steps = 0;
    while (r.left > 0 && steps < 200) {
        uint8_t op = *r.p++;
        r.left--;
        steps++;
        int before = pgev_params_count(&p);
        int rc = PGEV_OK;
        uint64_t v;
        switch (op % 24) {
        case 0: rc = pgev_params_null(&p, (Oid)take_u64(&r)); break;
        case 1: rc = pgev_params_bool(&p, take_u64(&r) & 1); break;
        case 2: rc = pgev_params_int2(&p, (int16_t)take_u64(&r)); break;
        case 3: rc = pgev_params_int4(&p, (int32_t)take_u64(&r)); break;
        case 4: rc = pgev_params_int8(&p, (int64_t)take_u64(&r)); break;
        case 5: v = take_u64(&r); { float f; uint32_t b = (uint32_t)v; memcpy(&f, &b, 4); rc = pgev_params_float4(&p, f); } break;
        case 6: v = take_u64(&r); { double d; memcpy(&d, &v, 8); rc = pgev_params_float8(&p, d); } break;
        case 7:
        case 8: {
            char *s = take_string(&r);
            owned[nowned++] = s;
            /* op 8 with an empty string passes NULL: SQL NULL. */
            const char *arg = op % 24 == 8 && s[0] == '\0' ? NULL : s;
            rc = op % 2 ? pgev_params_numeric(&p, arg) : pgev_params_text(&p, arg);
            break;
        }
        case 9: {
            size_t n = r.left ? *r.p : 0;
            if (r.left) {
                r.p++;
                r.left--;
            }
            if (n > r.left)
                n = r.left;
            void *copy = malloc(n ? n : 1);
            check(copy != NULL, "malloc");
            memcpy(copy, r.p, n);
            r.p += n;
            r.left -= n;
            owned[nowned++] = copy;
            rc = pgev_params_bytea(&p, n ? copy : NULL, n);
            break;
        }
        case 10: {
            uint8_t u[16] = { 0 };
            size_t n = r.left < 16 ? r.left : 16;
            memcpy(u, r.p, n);
            r.p += n;
            r.left -= n;
            rc = pgev_params_uuid(&p, u);
            break;
        }
        case 11: rc = pgev_params_date(&p, (int32_t)take_u64(&r)); break;
        case 12: rc = pgev_params_timestamp(&p, (int64_t)take_u64(&r)); break;
        case 13: rc = pgev_params_timestamptz(&p, (int64_t)take_u64(&r)); break;
        case 20:
        case 21: {
            char *s = take_string(&r);
            owned[nowned++] = s;
            rc = op % 24 == 20 ? pgev_params_json(&p, s) : pgev_params_jsonb(&p, s[0] ? s : NULL);
            break;
        }
        case 22: {
            pgev_inet in;
            memset(&in, 0, sizeof in);
            in.family = (uint8_t)take_byte(&r);
            in.bits = (uint8_t)take_byte(&r);
            in.is_cidr = take_byte(&r) & 1;
            size_t n = r.left < sizeof in.addr ? r.left : sizeof in.addr;
            memcpy(in.addr, r.p, n);
            r.p += n;
            r.left -= n;
            rc = pgev_params_inet(&p, &in);
            break;
        }
        case 23: {
            pgev_interval iv = { .usec = (int64_t)take_u64(&r) };
            uint64_t md = take_u64(&r);
            iv.days = (int32_t)md;
            iv.months = (int32_t)(md >> 32);
            rc = pgev_params_interval(&p, &iv);
            break;
        }
        default: {
            array_step st;
            memset(&st, 0, sizeof st);
            st.index = before;
            rc = add_array(&p, &r, op % 24 - 14, &st, owned, &nowned);
            if (rc == PGEV_OK)
                arrays[narrays++] = st;
            break;
        }
        }
        check(rc == PGEV_OK || rc == PGEV_EINVAL || rc == PGEV_ENOMEM,
              "a params call returns OK, EINVAL or ENOMEM");
        int after = pgev_params_count(&p);
        if (rc == PGEV_OK)
            check(after == before + 1, "a call that succeeded added one parameter");
        else
            check(after == before, "a call that failed added nothing");
        failed |= rc != PGEV_OK;
        check(after <= PGEV_PARAMS_MAX, "at most PGEV_PARAMS_MAX parameters");
    }

    pgev_query_args args = { .sql = "SELECT 1" };
    int rc = pgev_params_apply(&p, &args);
    check((rc == PGEV_OK) == !failed, "apply fails exactly when a call failed (sticky)");
    if (rc == PGEV_OK) {
        check(args.nparams == pgev_params_count(&p), "apply hands out every parameter");
        volatile unsigned sum = 0;
        for (int i = 0; i < args.nparams; i++) {
            const char *val = args.param_values[i];
            if (!val)
                continue;
            bool binary = args.param_formats && args.param_formats[i] == 1;
            size_t n = binary ? (size_t)args.param_lengths[i] : strlen(val);
            check(!binary || args.param_lengths[i] >= 0, "binary length is not negative");
            for (size_t k = 0; k < n; k++)
                sum += (unsigned char)val[k];
        }
        (void)sum;
        for (int i = 0; i < narrays; i++)
            decode_back(&args, &arrays[i]);
        for (int i = 0; i < args.nparams; i++)
            if (args.param_values[i] && args.param_formats[i] == 1 &&
                (args.param_types[i] == 869 || args.param_types[i] == 650 ||
                 args.param_types[i] == 1186)) /* not pgev_params_null(p, 869) */
                decode_scalar_back(&args, i);
    } else {
        check(args.nparams == 0 && args.param_values == NULL, "a failed apply leaves args alone");
    }
    pgev_params_clear(&p);
    check(pgev_params_count(&p) == 0, "clear empties");
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    return 0;
}
