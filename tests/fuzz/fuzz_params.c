/*
 * libFuzzer target: the pgev_params builder (lib/types.c).
 *
 * The input is a program: each byte picks a pgev_params_* call, and the
 * bytes after it give that call's argument (8 bytes for a number, 16 for a
 * uuid, a length byte and that many bytes for bytea, a NUL-terminated
 * string for text and numeric). After the program, pgev_params_apply()
 * fills a pgev_query_args. The target checks the builder's promises: at
 * most PGEV_PARAMS_MAX parameters, a failed call adds nothing and makes
 * apply fail (sticky errors), and every parameter apply hands out can be
 * read in full: binary values for their length, text values up to their
 * NUL (ASan sees any overrun).
 */
#include "pgev.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = { data, size };
    pgev_params p;
    pgev_params_init(&p);
    /* Strings and bytes are borrowed until apply: keep them (one per
     * step at most, and steps are capped below the array's size). */
    void *owned[256];
    int nowned = 0;
    bool failed = false;
    int steps = 0;
    while (r.left > 0 && steps < 200) {
        uint8_t op = *r.p++;
        r.left--;
        steps++;
        int before = pgev_params_count(&p);
        int rc = PGEV_OK;
        uint64_t v;
        switch (op % 14) {
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
            const char *arg = op % 14 == 8 && s[0] == '\0' ? NULL : s;
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
        default: rc = pgev_params_timestamptz(&p, (int64_t)take_u64(&r)); break;
        }
        check(rc == PGEV_OK || rc == PGEV_EINVAL, "a params call returns OK or EINVAL");
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
        (void)args.param_types;
    } else {
        check(args.nparams == 0 && args.param_values == NULL, "a failed apply leaves args alone");
    }
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    return 0;
}
