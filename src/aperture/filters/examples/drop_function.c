/* Drops records whose stack contains a frame named exactly --filter-arg. */
#include "aperture_filter.h"

u8 *aperture_filter(const u8 *batch, u32 len) {
    (void)len;
    u8 *keep = ap_result(batch);
    if (!ap_valid(batch)) return keep;
    const struct ap_header *h = ap_header(batch);
    const u8 *name = batch + h->arg_offset;
    if (h->arg_length == 0) return keep;
    /* Decide per string once, then each frame is one byte lookup. */
    u8 *hit = aperture_alloc(h->string_count ? h->string_count : 1);
    if (!hit) __builtin_trap();
    for (u32 s = 0; s < h->string_count; s++)
        hit[s] = (u8)ap_string_match(batch, s, name, h->arg_length, 0);
    const struct ap_record *r = ap_records(batch);
    for (u32 i = 0; i < h->record_count; i++) {
        const struct ap_frame *f = ap_stack(batch, &r[i]);
        for (u32 j = 0; j < r[i].stack_length; j++)
            if (hit[f[j].name]) {
                keep[i] = 0;
                break;
            }
    }
    return keep;
}
