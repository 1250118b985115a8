/* Keeps 1 record in N (--filter-arg, decimal; default 10), chosen by an FNV-1a hash of
 * the record's pid, tid, comm and frame names: deterministic, the same record is
 * always kept or always dropped. */
#include "aperture_filter.h"

static u32 fnv(u32 h, const u8 *p, u32 n) {
    for (u32 i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static u32 fnv_string(u32 h, const u8 *batch, u32 index) {
    const struct ap_string *s = ap_string(batch, index);
    return fnv(h, batch + s->offset, s->length);
}

u8 *aperture_filter(const u8 *batch, u32 len) {
    (void)len;
    u8 *keep = ap_result(batch);
    if (!ap_valid(batch)) return keep;
    const struct ap_header *h = ap_header(batch);
    u32 n = 0;
    const u8 *arg = batch + h->arg_offset;
    for (u32 i = 0; i < h->arg_length && arg[i] >= '0' && arg[i] <= '9'; i++)
        n = n * 10 + (arg[i] - '0');
    if (n == 0) n = 10;
    const struct ap_record *r = ap_records(batch);
    for (u32 i = 0; i < h->record_count; i++) {
        u32 x = 2166136261u;
        x = fnv(x, (const u8 *)&r[i].pid, 4);
        x = fnv(x, (const u8 *)&r[i].tid, 4);
        x = fnv_string(x, batch, r[i].comm);
        const struct ap_frame *f = ap_stack(batch, &r[i]);
        for (u32 j = 0; j < r[i].stack_length; j++) x = fnv_string(x, batch, f[j].name);
        keep[i] = (u8)(x % n == 0);
    }
    return keep;
}
