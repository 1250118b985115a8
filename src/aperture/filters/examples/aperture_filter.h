/* The Aperture filter ABI, version 1 (docs/filters.md), for filters written in C.
 *
 * Build: clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry \
 *          -Wl,--export=aperture_alloc -Wl,--export=aperture_filter -o f.wasm f.c
 * Each batch runs in a fresh instance, so the bump allocator below never frees.
 */
#ifndef APERTURE_FILTER_H
#define APERTURE_FILTER_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define APERTURE_MAGIC 0x46545041u /* "APTF" */
#define APERTURE_ABI_VERSION 1
#define APERTURE_CPU 1
#define APERTURE_LOCK 2

struct ap_header {
    u32 magic;
    u16 abi_version;
    u16 header_size;
    u32 record_count;
    u32 string_count;
    u32 strings_offset; /* string_count x struct ap_string */
    u32 records_offset; /* record_count x struct ap_record */
    u32 arg_offset;     /* --filter-arg bytes, not NUL-terminated */
    u32 arg_length;
};

struct ap_string {
    u32 offset; /* from the batch start; UTF-8, not NUL-terminated */
    u32 length;
};

struct ap_record {
    u32 event_type; /* APERTURE_CPU or APERTURE_LOCK */
    u32 pid;
    u32 tid;
    u32 comm;  /* string index */
    u64 value; /* cpu: samples; lock: wait ns */
    u32 stack_offset; /* stack_length x struct ap_frame, root first */
    u32 stack_length;
};

struct ap_frame {
    u32 name;   /* string index */
    u32 module; /* string index */
};

/* clang may emit calls to these even with -nostdlib. */
void *memset(void *dst, int c, unsigned long n) {
    u8 *d = dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

void *memcpy(void *dst, const void *src, unsigned long n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

extern u8 __heap_base;
static u32 heap_top;

/* Exported: the host asks for room for the batch. 0 means no room. */
void *aperture_alloc(u32 size) {
    if (!heap_top) heap_top = (u32)&__heap_base;
    u32 ptr = (heap_top + 7u) & ~7u;
    u32 end = ptr + size;
    u32 have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        u32 pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (unsigned long)-1) return 0;
    }
    heap_top = end;
    return (void *)ptr;
}

/* Helpers over one batch. */
static inline const struct ap_header *ap_header(const u8 *batch) {
    return (const struct ap_header *)batch;
}

static inline const struct ap_record *ap_records(const u8 *batch) {
    return (const struct ap_record *)(batch + ap_header(batch)->records_offset);
}

static inline const struct ap_frame *ap_stack(const u8 *batch, const struct ap_record *r) {
    return (const struct ap_frame *)(batch + r->stack_offset);
}

static inline const struct ap_string *ap_string(const u8 *batch, u32 index) {
    return (const struct ap_string *)(batch + ap_header(batch)->strings_offset) + index;
}

/* 1 when string `index` equals (exact) or starts with (prefix) the given bytes. */
static inline int ap_string_match(const u8 *batch, u32 index, const u8 *text, u32 len, int prefix) {
    const struct ap_string *s = ap_string(batch, index);
    if (prefix ? s->length < len : s->length != len) return 0;
    const u8 *p = batch + s->offset;
    for (u32 i = 0; i < len; i++)
        if (p[i] != text[i]) return 0;
    return 1;
}

/* The result: one keep (1) / drop (0) byte per record, allocated after the batch.
 * A batch whose header is not ABI version 1 keeps everything. */
static inline u8 *ap_result(const u8 *batch) {
    const struct ap_header *h = ap_header(batch);
    u8 *out = aperture_alloc(h->record_count ? h->record_count : 1);
    if (!out) __builtin_trap();
    memset(out, 1, h->record_count);
    return out;
}

static inline int ap_valid(const u8 *batch) {
    const struct ap_header *h = ap_header(batch);
    return h->magic == APERTURE_MAGIC && h->abi_version == APERTURE_ABI_VERSION;
}

#endif
