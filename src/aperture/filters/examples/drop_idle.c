/* Drops idle-CPU samples: pid 0 or a comm starting "swapper" (the idle task). */
#include "aperture_filter.h"

u8 *aperture_filter(const u8 *batch, u32 len) {
    (void)len;
    u8 *keep = ap_result(batch);
    if (!ap_valid(batch)) return keep;
    const struct ap_record *r = ap_records(batch);
    for (u32 i = 0; i < ap_header(batch)->record_count; i++)
        if (r[i].pid == 0 || ap_string_match(batch, r[i].comm, (const u8 *)"swapper", 7, 1))
            keep[i] = 0;
    return keep;
}
