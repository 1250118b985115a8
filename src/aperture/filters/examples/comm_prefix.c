/* Keeps only processes whose comm starts with --filter-arg (everything when it is empty). */
#include "aperture_filter.h"

u8 *aperture_filter(const u8 *batch, u32 len) {
    (void)len;
    u8 *keep = ap_result(batch);
    if (!ap_valid(batch)) return keep;
    const struct ap_header *h = ap_header(batch);
    const u8 *prefix = batch + h->arg_offset;
    const struct ap_record *r = ap_records(batch);
    for (u32 i = 0; i < h->record_count; i++)
        keep[i] = (u8)ap_string_match(batch, r[i].comm, prefix, h->arg_length, 1);
    return keep;
}
