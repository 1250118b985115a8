/* The rows of an x86_64 .eh_frame section, compiled: the same interpreter as
 * tables.py's _scan_frames / _Frames.fde / _run / _segments / _Writer, written
 * again in C because the Python one is most of the agent's CPU on a busy host
 * (a 30 MB compiler's table took 0.6 s). tables.py stays the reference: a
 * test runs both on the host's binaries and on damaged sections and wants the
 * same bytes, counts and causes, and the agent falls back to Python when this
 * library cannot be loaded.
 *
 * The input is a file other users may control: every read is checked against
 * the section's length, and a value Python would hold as a big integer is
 * held here as a saturating 128-bit one (every comparison the rows make is
 * with numbers far inside that range, so saturation changes no outcome).
 *
 * Built by `make native` (gcc -O2 -shared -fPIC), loaded with ctypes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef __int128 i128;
typedef unsigned __int128 u128;

/* Larger magnitudes saturate here: far beyond any address (2^65) or offset. */
#define BIG ((i128)1 << 100)

/* Row kinds: tables.py's CFA_* and RBP_* */
enum { CFA_NONE, CFA_RSP, CFA_RBP, CFA_PLT, CFA_STOP, CFA_SIGNAL, CFA_UNSUPPORTED };
enum { RBP_UNCHANGED, RBP_OFFSET, RBP_UNDEFINED };
/* Register rule kinds (tables.py's _R_*) */
enum { R_SAME, R_OFFSET, R_OTHER, R_UNDEF };
/* CFA "registers" of expression-defined CFAs */
#define CFA_EXPR_PLT (-1)
#define CFA_EXPR_OTHER (-2)
#define CFA_EXPR_PLT_BAD (-3)
/* Why a row is UNSUPPORTED (tables.py's _CAUSE_*) */
enum { CAUSE_RA = 1, CAUSE_EXPR, CAUSE_PLT_OFFSET, CAUSE_CFA_RANGE, CAUSE_RBP_RANGE };
#define CAUSE_REG 100
#define DW_RBP 6
#define DW_RSP 7
#define U32_MAX 0xFFFFFFFFULL

struct eh_result {
	uint8_t *rows;          /* packed 12-byte rows (tables.py's ROW_FORMAT) */
	uint64_t rows_len;      /* bytes */
	uint64_t segments;      /* FDEs given to the writer */
	uint64_t errors;        /* FDEs that did not decode, and other damage */
	uint32_t too_high;      /* an FDE ends above 4 GiB: no table */
	uint32_t ncauses;
	int64_t *cause_codes;   /* UNSUPPORTED rows by cause, in order of first use */
	uint64_t *cause_counts;
	uint64_t *gap_starts;   /* the code no segment covers: [start, end) */
	uint64_t *gap_ends;
	uint64_t ngaps;
	uint32_t wide;          /* some gap is at least MIN_UNCOVERED bytes */
	uint32_t reserved;
};

/* An uncovered stretch shorter than this is padding between functions
 * (tables.py's _MIN_UNCOVERED). */
#define MIN_UNCOVERED 64

struct state {
	i128 cfa_reg, cfa_off, rbp_kind, rbp_off, ra_kind, ra_off;
};

struct cie {
	int ok;
	i128 code_align, data_align, ra_reg;
	int fde_enc;
	int augmented, signal;
	struct state state;
};

struct key {
	int cfa_type, rbp_type;
	int64_t cfa_off, rbp_off;
	int64_t cause;
};

struct row {
	uint64_t pc;
	struct key key;
};

struct rows {
	struct row *v;
	size_t n, cap;
};

struct buf {
	uint8_t *p;
	size_t n, cap;
	int oom;
};

struct input {
	const uint8_t *d;
	uint64_t n;
	uint64_t sec_addr;
};

static i128 clamp(i128 v)
{
	return v > BIG ? BIG : v < -BIG ? -BIG : v;
}

static i128 mul(i128 a, i128 b)
{
	return clamp(a * b); /* |a|, |b| <= 2^100 after clamp: the product fits */
}

/* An unsigned LEB128, exact while it fits (then saturated). 0: ran past the end. */
static int uleb(const struct input *in, uint64_t *p, i128 *out)
{
	u128 v = 0;
	int64_t shift = 0;
	int big = 0;
	uint8_t b;

	do {
		if (*p >= in->n)
			return 0;
		b = in->d[(*p)++];
		if (shift < 112)
			v |= (u128)(b & 0x7F) << shift;
		else if (b & 0x7F)
			big = 1;
		shift += 7;
	} while (b & 0x80);
	*out = big || v > (u128)BIG ? BIG : (i128)v;
	return 1;
}

/* A signed LEB128, exact while it fits (then saturated by its sign). */
static int sleb(const struct input *in, uint64_t *p, i128 *out)
{
	u128 v = 0;
	uint64_t first = *p, nbytes;
	int64_t shift = 0;
	int big = 0, neg;
	uint8_t b, fill;

	do {
		if (*p >= in->n)
			return 0;
		b = in->d[(*p)++];
		if (shift < 112)
			v |= (u128)(b & 0x7F) << shift;
		shift += 7;
	} while (b & 0x80);
	neg = (b & 0x40) != 0;
	fill = neg ? 0x7F : 0x00;
	/* groups from bit 112 on leave the value within 2^112 only if they are sign fill */
	nbytes = *p - first;
	for (uint64_t i = 16; i < nbytes; i++)
		if ((in->d[first + i] & 0x7F) != fill)
			big = 1;
	if (big) {
		*out = neg ? -BIG : BIG;
		return 1;
	}
	if (neg)
		v |= ~(u128)0 << (shift < 112 ? shift : 112);
	*out = clamp((i128)v);
	return 1;
}

/* A LEB128 as an address (signed or not): its value modulo 2^64, whatever its length. */
static int leb64(const struct input *in, uint64_t *p, int is_signed, uint64_t *out)
{
	uint64_t v = 0;
	int64_t shift = 0;
	uint8_t b;

	do {
		if (*p >= in->n)
			return 0;
		b = in->d[(*p)++];
		if (shift < 64)
			v |= (uint64_t)(b & 0x7F) << shift;
		shift += 7;
	} while (b & 0x80);
	if (is_signed && (b & 0x40) && shift < 64)
		v |= ~(uint64_t)0 << shift;
	*out = v;
	return 1;
}

static uint64_t le(const uint8_t *s, int size)
{
	uint64_t v = 0;

	for (int i = size - 1; i >= 0; i--)
		v = v << 8 | s[i];
	return v;
}

/* p + size, or past the end of the input when that is further (no overflow). */
static uint64_t skip(const struct input *in, uint64_t p, i128 size)
{
	return size > (i128)(in->n - (p < in->n ? p : in->n)) ? in->n + 1 : p + (uint64_t)size;
}

/* A DW_EH_PE-encoded pointer at *p; field_addr is its own address (pcrel). */
static int pointer(const struct input *in, uint64_t *p, int enc, uint64_t field_addr,
		   uint64_t *out)
{
	int fmt = enc & 0x0F, app = enc & 0x70, size = 0, sign = 0;
	uint64_t v;

	switch (fmt) {
	case 0x00: size = 8; break;
	case 0x02: size = 2; break;
	case 0x03: size = 4; break;
	case 0x04: size = 8; break;
	case 0x0A: size = 2; sign = 1; break;
	case 0x0B: size = 4; sign = 1; break;
	case 0x0C: size = 8; sign = 1; break;
	case 0x01:
	case 0x09:
		if (!leb64(in, p, fmt == 0x09, &v))
			return 0;
		break;
	default:
		return 0;
	}
	if (size) {
		if (*p > in->n || in->n - *p < (uint64_t)size)
			return 0;
		v = le(in->d + *p, size);
		if (sign && size < 8 && (v >> (8 * size - 1)) & 1)
			v |= ~(uint64_t)0 << (8 * size);
		*p += size;
	}
	if (app == 0x10)
		v += field_addr;
	else if (app)
		return 0;
	if (enc & 0x80)
		return 0;
	*out = v;
	return 1;
}

static struct key row_key(const struct state *s)
{
	struct key k = {0};
	int cfa_type;

	if (s->ra_kind == R_UNDEF) {
		k.cfa_type = CFA_STOP;
		return k;
	}
	k.cfa_type = CFA_UNSUPPORTED;
	if (s->cfa_reg == DW_RSP) {
		cfa_type = CFA_RSP;
	} else if (s->cfa_reg == DW_RBP) {
		cfa_type = CFA_RBP;
	} else if (s->cfa_reg == CFA_EXPR_PLT) {
		cfa_type = CFA_PLT;
	} else if (s->cfa_reg == CFA_EXPR_OTHER) {
		k.cause = CAUSE_EXPR;
		return k;
	} else if (s->cfa_reg == CFA_EXPR_PLT_BAD) {
		k.cause = CAUSE_PLT_OFFSET;
		return k;
	} else {
		i128 c = CAUSE_REG + s->cfa_reg;
		k.cause = c > INT64_MAX ? INT64_MAX : (int64_t)c;
		return k;
	}
	if (s->ra_kind != R_OFFSET || s->ra_off != -8) {
		k.cause = CAUSE_RA;
		return k;
	}
	if (s->cfa_off < -0x8000 || s->cfa_off >= 0x8000) {
		k.cause = CAUSE_CFA_RANGE;
		return k;
	}
	k.cfa_type = cfa_type;
	k.cfa_off = (int64_t)s->cfa_off;
	if (s->rbp_kind == R_SAME) {
		k.rbp_type = RBP_UNCHANGED;
	} else if (s->rbp_kind == R_OFFSET) {
		if (s->rbp_off < -0x8000 || s->rbp_off >= 0x8000) {
			k = (struct key){.cfa_type = CFA_UNSUPPORTED, .cause = CAUSE_RBP_RANGE};
			return k;
		}
		k.rbp_type = RBP_OFFSET;
		k.rbp_off = (int64_t)s->rbp_off;
	} else {
		k.rbp_type = RBP_UNDEFINED;
	}
	return k;
}

static int same_key(const struct key *a, const struct key *b)
{
	return a->cfa_type == b->cfa_type && a->rbp_type == b->rbp_type &&
	       a->cfa_off == b->cfa_off && a->rbp_off == b->rbp_off && a->cause == b->cause;
}

static int push_row(struct rows *r, uint64_t pc, const struct key *k)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct row *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return 0;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].pc = pc;
	r->v[r->n].key = *k;
	r->n++;
	return 1;
}

static const uint8_t PLT_MIDDLE[4] = {0x80, 0x00, 0x3F, 0x1A};
static const uint8_t PLT_TAIL[4] = {0x2A, 0x33, 0x24, 0x22};

static void cfa_expression(const struct input *in, uint64_t p, i128 size, struct state *s)
{
	const uint8_t *b = in->d + p;

	s->cfa_reg = CFA_EXPR_OTHER;
	s->cfa_off = 0;
	if (size != 11 || p > in->n || in->n - p < 11)
		return;
	if (b[0] != 0x77 || memcmp(b + 2, PLT_MIDDLE, 4) || b[6] < 0x30 || b[6] > 0x4F ||
	    memcmp(b + 7, PLT_TAIL, 4))
		return;
	if (b[1] != 8) {
		s->cfa_reg = CFA_EXPR_PLT_BAD;
		return;
	}
	s->cfa_reg = CFA_EXPR_PLT;
	s->cfa_off = b[6] - 0x30;
}

#define STACK_CHUNK 16

/* Interpret CFA instructions [p, end) from *init; rows (when given) get a row at
 * each advance where the rule changed, for pcs in [loc, pc_end). enc < 0: a CIE
 * (no set_loc). *out: the final state. 0: the instructions do not decode;
 * -1: out of memory. */
static int run(const struct input *in, uint64_t p, uint64_t end, i128 caf, i128 daf,
	       i128 ra_reg, i128 loc, i128 pc_end, int enc, struct rows *rows,
	       const struct state *init, struct state *out)
{
	struct state s = *init, *stack = NULL;
	size_t depth = 0, cap = 0;
	struct key last = {0}, k;
	int has_last = 0, changed = 1, ok = 0;
	i128 delta, reg, off, size, kind;
	uint64_t target;
	uint8_t op;

	while (p < end) {
		if (p >= in->n)
			goto fail;
		op = in->d[p++];
		delta = 0;
		switch (op & 0xC0) {
		case 0x40:
			delta = mul(op & 0x3F, caf);
			goto advanced;
		case 0x80:
			reg = op & 0x3F;
			if (!uleb(in, &p, &off))
				goto fail;
			off = mul(off, daf);
			if (reg == DW_RBP) {
				s.rbp_kind = R_OFFSET;
				s.rbp_off = off;
				changed = 1;
			} else if (reg == ra_reg) {
				s.ra_kind = R_OFFSET;
				s.ra_off = off;
				changed = 1;
			}
			goto advanced;
		case 0xC0:
			reg = op & 0x3F;
			if (reg == DW_RBP) {
				s.rbp_kind = init->rbp_kind;
				s.rbp_off = init->rbp_off;
				changed = 1;
			} else if (reg == ra_reg) {
				s.ra_kind = init->ra_kind;
				s.ra_off = init->ra_off;
				changed = 1;
			}
			goto advanced;
		}
		switch (op) {
		case 0x0E: /* def_cfa_offset */
			if (!uleb(in, &p, &s.cfa_off))
				goto fail;
			changed = 1;
			break;
		case 0x00: /* nop */
			break;
		case 0x02: /* advance_loc1 */
			if (p >= in->n)
				goto fail;
			delta = mul(in->d[p], caf);
			p += 1;
			break;
		case 0x03: /* advance_loc2 */
			if (in->n - p < 2)
				goto fail;
			delta = mul(le(in->d + p, 2), caf);
			p += 2;
			break;
		case 0x04: /* advance_loc4 */
			if (in->n - p < 4)
				goto fail;
			delta = mul(le(in->d + p, 4), caf);
			p += 4;
			break;
		case 0x0A: /* remember_state */
			if (depth == cap) {
				size_t ncap = cap + STACK_CHUNK;
				struct state *ns = realloc(stack, ncap * sizeof(*ns));

				if (!ns) {
					ok = -1;
					goto done;
				}
				stack = ns;
				cap = ncap;
			}
			stack[depth++] = s;
			break;
		case 0x0B: /* restore_state */
			if (!depth)
				goto fail;
			s = stack[--depth];
			changed = 1;
			break;
		case 0x0C: /* def_cfa */
		case 0x12: /* def_cfa_sf */
			if (!uleb(in, &p, &s.cfa_reg))
				goto fail;
			if (op == 0x0C) {
				if (!uleb(in, &p, &s.cfa_off))
					goto fail;
			} else {
				if (!sleb(in, &p, &off))
					goto fail;
				s.cfa_off = mul(off, daf);
			}
			changed = 1;
			break;
		case 0x0D: /* def_cfa_register */
			if (!uleb(in, &p, &s.cfa_reg))
				goto fail;
			changed = 1;
			break;
		case 0x13: /* def_cfa_offset_sf */
			if (!sleb(in, &p, &off))
				goto fail;
			s.cfa_off = mul(off, daf);
			changed = 1;
			break;
		case 0x0F: /* def_cfa_expression */
			if (!uleb(in, &p, &size))
				goto fail;
			cfa_expression(in, p, size, &s);
			p = skip(in, p, size);
			changed = 1;
			break;
		case 0x05: /* offset_extended */
		case 0x11: /* offset_extended_sf */
		case 0x14: /* val_offset */
		case 0x15: /* val_offset_sf */
		case 0x2F: /* GNU_negative_offset_extended */
			if (!uleb(in, &p, &reg))
				goto fail;
			if (op == 0x11 || op == 0x15) {
				if (!sleb(in, &p, &off))
					goto fail;
			} else if (!uleb(in, &p, &off)) {
				goto fail;
			}
			off = op == 0x2F ? mul(-off, daf) : mul(off, daf);
			kind = (op == 0x05 || op == 0x11 || op == 0x2F) ? R_OFFSET : R_OTHER;
			if (reg == DW_RBP) {
				s.rbp_kind = kind;
				s.rbp_off = off;
				changed = 1;
			} else if (reg == ra_reg) {
				s.ra_kind = kind;
				s.ra_off = off;
				changed = 1;
			}
			break;
		case 0x06: /* restore_extended */
		case 0x07: /* undefined */
		case 0x08: /* same_value */
			if (!uleb(in, &p, &reg))
				goto fail;
			if (reg == DW_RBP) {
				if (op == 0x06) {
					s.rbp_kind = init->rbp_kind;
					s.rbp_off = init->rbp_off;
				} else {
					s.rbp_kind = op == 0x07 ? R_UNDEF : R_SAME;
					s.rbp_off = 0;
				}
				changed = 1;
			} else if (reg == ra_reg) {
				if (op == 0x06) {
					s.ra_kind = init->ra_kind;
					s.ra_off = init->ra_off;
				} else {
					s.ra_kind = op == 0x07 ? R_UNDEF : R_SAME;
					s.ra_off = 0;
				}
				changed = 1;
			}
			break;
		case 0x09: /* register */
			if (!uleb(in, &p, &reg) || !uleb(in, &p, &off))
				goto fail;
			if (reg == DW_RBP) {
				s.rbp_kind = R_OTHER;
				s.rbp_off = 0;
				changed = 1;
			} else if (reg == ra_reg) {
				s.ra_kind = R_OTHER;
				s.ra_off = 0;
				changed = 1;
			}
			break;
		case 0x10: /* expression */
		case 0x16: /* val_expression */
			if (!uleb(in, &p, &reg) || !uleb(in, &p, &size))
				goto fail;
			p = skip(in, p, size);
			if (reg == DW_RBP) {
				s.rbp_kind = R_OTHER;
				s.rbp_off = 0;
				changed = 1;
			} else if (reg == ra_reg) {
				s.ra_kind = R_OTHER;
				s.ra_off = 0;
				changed = 1;
			}
			break;
		case 0x2E: /* GNU_args_size */
			if (!uleb(in, &p, &off))
				goto fail;
			break;
		case 0x2D: /* GNU_window_save: no operands */
			break;
		case 0x01: /* set_loc */
			if (enc < 0)
				goto fail;
			if (!pointer(in, &p, enc, in->sec_addr + p, &target))
				goto fail;
			if ((i128)target < loc)
				goto fail;
			delta = (i128)target - loc;
			break;
		default:
			goto fail;
		}
advanced:
		if (delta) {
			if (changed && loc < pc_end && rows) {
				k = row_key(&s);
				if (!has_last || !same_key(&k, &last)) {
					if (!push_row(rows, (uint64_t)loc, &k)) {
						ok = -1;
						goto done;
					}
					last = k;
					has_last = 1;
				}
			}
			changed = 0;
			loc = clamp(loc + delta);
		}
	}
	if (p > end)
		goto fail;
	if (changed && loc < pc_end && rows) {
		k = row_key(&s);
		if (!has_last || !same_key(&k, &last)) {
			if (!push_row(rows, (uint64_t)loc, &k)) {
				ok = -1;
				goto done;
			}
		}
	}
	*out = s;
	ok = 1;
	goto done;
fail:
	ok = 0;
done:
	free(stack);
	return ok;
}

static const struct state INITIAL = {DW_RSP, 8, R_SAME, 0, R_SAME, 0};

/* The CIE at `at` (tables.py's _parse_cie); ok = 0 when it is not usable. */
static struct cie parse_cie(const struct input *in, uint64_t at, int is_eh)
{
	struct cie c = {0};
	uint64_t length, p, end, id, aug_end, instructions;
	int id_size, version;
	i128 aug_len;
	const uint8_t *aug;
	size_t aug_n;

	if (at > in->n || in->n - at < 4)
		return c;
	length = le(in->d + at, 4);
	if (length == 0xFFFFFFFF) {
		if (in->n - at < 12)
			return c;
		length = le(in->d + at + 4, 8);
		p = at + 12;
		id_size = 8;
	} else {
		p = at + 4;
		id_size = 4;
	}
	if (length > in->n - p)
		return c;
	end = p + length;
	/* the id as Python slices it: bytes past the input are simply not there */
	id = le(in->d + p, in->n - p < (uint64_t)id_size ? (int)(in->n - p) : id_size);
	if (id != (is_eh ? 0 : (id_size == 4 ? 0xFFFFFFFFULL : ~0ULL)))
		return c;
	p += id_size;
	if (p >= in->n)
		return c;
	version = in->d[p];
	if (p + 1 > in->n)
		return c;
	aug = in->d + p + 1;
	{
		const uint8_t *z = memchr(aug, 0, in->n - (p + 1));

		if (!z)
			return c;
		aug_end = (uint64_t)(z - in->d);
	}
	aug_n = aug_end - (p + 1);
	p = aug_end + 1;
	for (size_t i = 0; i + 1 < aug_n; i++)
		if (aug[i] == 'e' && aug[i + 1] == 'h') {
			p += 8;
			break;
		}
	if (version >= 4)
		p += 2;
	if (!uleb(in, &p, &c.code_align) || !sleb(in, &p, &c.data_align))
		return c;
	if (version == 1) {
		if (p >= in->n)
			return c;
		c.ra_reg = in->d[p++];
	} else if (!uleb(in, &p, &c.ra_reg)) {
		return c;
	}
	if (aug_n && aug[0] != 'z') {
		/* usable only if nothing but "eh" pairs: Python's aug.replace("eh", "") */
		size_t i = 0;

		while (i < aug_n) {
			if (i + 1 < aug_n && aug[i] == 'e' && aug[i + 1] == 'h')
				i += 2;
			else
				return c;
		}
	}
	c.fde_enc = 0x00;
	if (aug_n && aug[0] == 'z') {
		if (!uleb(in, &p, &aug_len))
			return c;
		instructions = skip(in, p, aug_len);
		for (size_t i = 1; i < aug_n; i++) {
			char ch = (char)aug[i];

			if (ch == 'R') {
				if (p >= in->n)
					return c;
				c.fde_enc = in->d[p++];
			} else if (ch == 'P') {
				uint64_t q, ignored;

				if (p >= in->n)
					return c;
				q = p + 1;
				if (!pointer(in, &q, in->d[p] & 0x7F, 0, &ignored))
					return c;
				p = q;
			} else if (ch == 'L') {
				p += 1;
			} else if (ch == 'S') {
				c.signal = 1;
			} else if (ch != 'B') {
				break;
			}
		}
		p = instructions;
		c.augmented = 1;
	}
	if (run(in, p, end, c.code_align, c.data_align, c.ra_reg, 0, 0, -1, NULL, &INITIAL,
		&c.state) != 1)
		return c;
	c.ok = 1;
	return c;
}

/* (begin, end pc, where the instructions start) of the FDE header at p. */
static int fde_header(const struct input *in, uint64_t p, uint64_t end, const struct cie *c,
		      uint64_t *begin, u128 *pc_end, uint64_t *insns)
{
	uint64_t size;
	i128 aug_len;

	if (c->fde_enc == 0x1B) {
		if (p > in->n || in->n - p < 8)
			return 0;
		*begin = (uint64_t)(int64_t)(int32_t)le(in->d + p, 4) + in->sec_addr + p;
		size = le(in->d + p + 4, 4);
		p += 8;
	} else {
		if (!pointer(in, &p, c->fde_enc, in->sec_addr + p, begin))
			return 0;
		if (!pointer(in, &p, c->fde_enc & 0x0F, 0, &size))
			return 0;
	}
	if (c->augmented) {
		if (!uleb(in, &p, &aug_len))
			return 0;
		p = skip(in, p, aug_len);
	}
	if (p > end)
		return 0;
	*pc_end = (u128)*begin + size;
	*insns = p;
	return 1;
}

struct fde {
	uint64_t begin;
	uint64_t at;     /* the initial_location field */
	uint64_t end;    /* the end of the entry */
	uint64_t cie_at;
	uint64_t index;  /* in the section */
};

static int by_begin(const void *a, const void *b)
{
	const struct fde *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* A few recently used CIEs by offset (a section has a handful). */
#define CIE_SLOTS 64
struct cie_cache {
	uint64_t at[CIE_SLOTS];
	int used[CIE_SLOTS];
	struct cie cie[CIE_SLOTS];
};

static const struct cie *cie_at(struct cie_cache *cc, const struct input *in, uint64_t at,
				int is_eh)
{
	unsigned slot = (unsigned)((at * 0x9E3779B97F4A7C15ULL) >> 58);

	if (!cc->used[slot] || cc->at[slot] != at) {
		cc->cie[slot] = parse_cie(in, at, is_eh);
		cc->at[slot] = at;
		cc->used[slot] = 1;
	}
	return &cc->cie[slot];
}

static int put(struct buf *b, const void *src, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		uint8_t *p;

		while (cap < b->n + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return 0;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, src, n);
	b->n += n;
	return 1;
}

static int put_row(struct buf *b, uint64_t pc, int cfa_type, int rbp_type, int64_t cfa_off,
		   int64_t rbp_off)
{
	uint8_t r[12];
	uint32_t pc32 = (uint32_t)pc;
	int16_t co = (int16_t)cfa_off, ro = (int16_t)rbp_off, ra = 0;

	memcpy(r, &pc32, 4);
	r[4] = (uint8_t)cfa_type;
	r[5] = (uint8_t)rbp_type;
	memcpy(r + 6, &co, 2);
	memcpy(r + 8, &ro, 2);
	memcpy(r + 10, &ra, 2);
	return put(b, r, sizeof(r));
}

/* tables.py's _Gaps: the stretches of the (sorted, disjoint) code ranges that no
 * segment covers, segments fed in address order. */
struct gaps {
	const uint64_t *code_start, *code_end;
	uint64_t ncode, k;    /* k: the first code range that may still hold a gap */
	uint64_t cursor;      /* the end of the last segment */
	struct buf out;       /* (start, end) pairs */
	int wide;
};

static void gap(struct gaps *g, uint64_t lo, u128 hi)
{
	uint64_t k = g->k, start, pair[2];
	u128 end;

	while (k < g->ncode && g->code_end[k] <= lo)
		k++;
	g->k = k;
	while (k < g->ncode && (u128)g->code_start[k] < hi) {
		start = g->code_start[k] > lo ? g->code_start[k] : lo;
		end = (u128)g->code_end[k] < hi ? (u128)g->code_end[k] : hi;
		if ((u128)start < end) {
			pair[0] = start;
			pair[1] = (uint64_t)end;
			put(&g->out, pair, sizeof(pair));
			if (end - start >= MIN_UNCOVERED)
				g->wide = 1;
		}
		if ((u128)g->code_end[k] > hi)
			break;
		k++;
	}
}

/* tables.py's _Writer: disjoint FDEs in address order, merged, NONE rows over gaps. */
struct writer {
	struct buf rows, causes;
	struct gaps gaps;
	struct key last;
	int has_last;
	int64_t end;      /* where the previous FDE ended; -1: none yet */
	uint64_t segments;
	int too_high;
};

static const struct key NONE_KEY = {CFA_NONE, RBP_UNCHANGED, 0, 0, 0};

static void count_cause(struct writer *w, int64_t cause)
{
	struct { int64_t code; uint64_t n; } *c = (void *)w->causes.p;
	size_t n = w->causes.n / sizeof(*c);

	for (size_t i = 0; i < n; i++)
		if (c[i].code == cause) {
			c[i].n++;
			return;
		}
	{
		struct { int64_t code; uint64_t n; } one = {cause, 1};

		put(&w->causes, &one, sizeof(one));
	}
}

static void writer_add(struct writer *w, uint64_t begin, u128 end, const struct rows *rows,
		       size_t nrows)
{
	w->segments++;
	if (end > U32_MAX)
		w->too_high = 1;
	if (w->too_high)
		return;
	if (begin > w->gaps.cursor)
		gap(&w->gaps, w->gaps.cursor, begin);
	w->gaps.cursor = (uint64_t)end;
	if (w->end >= 0 && begin != (uint64_t)w->end && !(w->has_last && same_key(&w->last, &NONE_KEY))) {
		put_row(&w->rows, (uint64_t)w->end, CFA_NONE, RBP_UNCHANGED, 0, 0);
		w->last = NONE_KEY;
		w->has_last = 1;
	}
	for (size_t i = 0; i < nrows; i++) {
		const struct key *k = &rows->v[i].key;

		if (w->has_last && same_key(k, &w->last))
			continue;
		if (w->has_last && k->cfa_type == CFA_UNSUPPORTED && w->last.cfa_type == CFA_UNSUPPORTED)
			continue;
		put_row(&w->rows, rows->v[i].pc, k->cfa_type, k->rbp_type, k->cfa_off, k->rbp_off);
		w->last = *k;
		w->has_last = 1;
		if (k->cause)
			count_cause(w, k->cause);
	}
	w->end = (int64_t)end;
}

/* One FDE's rows into *rows (emptied first): 1, or 0 when none (an error counted
 * in *errors when its instructions do not decode), -1 out of memory. */
static int fde_rows(const struct input *in, struct cie_cache *cc, const struct fde *f,
		    int is_eh, struct rows *rows, uint64_t *begin, u128 *pc_end, uint64_t *errors)
{
	const struct cie *c = cie_at(cc, in, f->cie_at, is_eh);
	uint64_t insns;
	struct state ignored;
	int r;

	rows->n = 0;
	if (!fde_header(in, f->at, f->end, c, begin, pc_end, &insns)) {
		(*errors)++; /* cannot happen: the scan read this header */
		return 0;
	}
	if (c->signal) {
		struct key k = {CFA_SIGNAL, RBP_UNCHANGED, 0, 0, 0};

		return push_row(rows, *begin, &k) ? 1 : -1;
	}
	r = run(in, insns, f->end, c->code_align, c->data_align, c->ra_reg, (i128)*begin,
		(i128)*pc_end, c->fde_enc, rows, &c->state, &ignored);
	if (r < 0)
		return -1;
	if (r == 0) {
		(*errors)++;
		return 0;
	}
	return rows->n ? 1 : 0;
}

void aperture_eh_free(struct eh_result *r)
{
	free(r->rows);
	free(r->cause_codes);
	free(r->cause_counts);
	free(r->gap_starts);
	free(r->gap_ends);
	memset(r, 0, sizeof(*r));
}

/* The rows of a .eh_frame (is_eh) or .debug_frame section at sec_addr, and the
 * gaps its FDEs leave in the ncode code ranges [code_start, code_end) (sorted,
 * disjoint). 0: done (free with aperture_eh_free); -1: out of memory. */
int aperture_eh_rows(const uint8_t *data, uint64_t len, uint64_t sec_addr, int is_eh,
		     const uint64_t *code_start, const uint64_t *code_end, uint64_t ncode,
		     struct eh_result *out)
{
	struct input in = {data, len, sec_addr};
	struct cie_cache *cc = calloc(1, sizeof(*cc));
	struct buf fdes = {0};
	struct rows a = {0}, b = {0}, *pending = &a, *cur = &b, *t;
	struct writer w = {0};
	uint64_t pos = 0, errors = 0, count = 0, pbegin = 0, cbegin;
	u128 pend = 0, cend;
	int have_pending = 0, sorted = 1, rc = -1;
	struct fde *fv;

	memset(out, 0, sizeof(*out));
	w.end = -1;
	w.gaps.code_start = code_start;
	w.gaps.code_end = code_end;
	w.gaps.ncode = ncode;
	if (!cc)
		return -1;
	/* the scan: where each FDE is (tables.py's _scan_frames) */
	while (len >= 4 && pos <= len - 4) {
		uint64_t length = le(data + pos, 4), start, end, id, cie;
		int id_size;
		uint64_t begin, insns;
		u128 pc_end;
		const struct cie *c;
		struct fde f;

		if (length == 0) {
			if (is_eh)
				break;
			pos += 4;
			continue;
		}
		if (length == 0xFFFFFFFF) {
			if (len - pos < 12)
				break;
			length = le(data + pos + 4, 8);
			start = pos + 12;
			id_size = 8;
		} else {
			start = pos + 4;
			id_size = 4;
		}
		if (length > len - start || length < (uint64_t)id_size) {
			errors++;
			break;
		}
		end = start + length;
		pos = end;
		id = le(data + start, id_size);
		if (is_eh) {
			if (id == 0)
				continue;
			if (id > start) { /* a CIE before the section */
				errors++;
				continue;
			}
			cie = start - id;
		} else {
			if (id == (id_size == 4 ? 0xFFFFFFFFULL : ~0ULL))
				continue;
			cie = id;
		}
		c = cie_at(cc, &in, cie, is_eh);
		if (!c->ok) {
			errors++;
			continue;
		}
		if (!fde_header(&in, start + id_size, end, c, &begin, &pc_end, &insns)) {
			errors++;
			continue;
		}
		if (pc_end == begin)
			continue;
		f = (struct fde){begin, start + id_size, end, cie, count};
		if (count && begin < ((struct fde *)fdes.p)[count - 1].begin)
			sorted = 0;
		if (!put(&fdes, &f, sizeof(f)))
			goto out;
		count++;
	}
	fv = (struct fde *)fdes.p;
	if (!sorted)
		qsort(fv, count, sizeof(*fv), by_begin);
	/* the segments (tables.py's _segments) into the writer */
	for (uint64_t i = 0; i < count; i++) {
		int r = fde_rows(&in, cc, &fv[i], is_eh, cur, &cbegin, &cend, &errors);

		if (r < 0)
			goto out;
		if (r == 0)
			continue;
		if (have_pending) {
			if (cbegin == pbegin)
				continue;
			if (cbegin < pend) {
				size_t keep = 0;

				while (keep < pending->n && pending->v[keep].pc < cbegin)
					keep++;
				pending->n = keep;
				pend = cbegin;
			}
			writer_add(&w, pbegin, pend, pending, pending->n);
		}
		t = pending;
		pending = cur;
		cur = t;
		pbegin = cbegin;
		pend = cend;
		have_pending = 1;
	}
	if (have_pending)
		writer_add(&w, pbegin, pend, pending, pending->n);
	if (!w.too_high && w.end >= 0 && !(w.has_last && same_key(&w.last, &NONE_KEY)))
		put_row(&w.rows, (uint64_t)w.end, CFA_NONE, RBP_UNCHANGED, 0, 0);
	gap(&w.gaps, w.gaps.cursor, (u128)1 << 65);
	if (w.rows.oom || w.causes.oom || w.gaps.out.oom)
		goto out;
	out->rows = w.rows.p;
	out->rows_len = w.rows.n;
	w.rows.p = NULL;
	out->segments = w.segments;
	out->errors = errors;
	out->too_high = (uint32_t)w.too_high;
	{
		struct { int64_t code; uint64_t n; } *cv = (void *)w.causes.p;
		size_t n = w.causes.n / sizeof(*cv);

		out->cause_codes = malloc((n ? n : 1) * sizeof(int64_t));
		out->cause_counts = malloc((n ? n : 1) * sizeof(uint64_t));
		if (!out->cause_codes || !out->cause_counts)
			goto out;
		for (size_t i = 0; i < n; i++) {
			out->cause_codes[i] = cv[i].code;
			out->cause_counts[i] = cv[i].n;
		}
		out->ncauses = (uint32_t)n;
	}
	{
		uint64_t *g = (uint64_t *)w.gaps.out.p;
		size_t n = w.gaps.out.n / (2 * sizeof(uint64_t));

		out->gap_starts = malloc((n ? n : 1) * sizeof(uint64_t));
		out->gap_ends = malloc((n ? n : 1) * sizeof(uint64_t));
		if (!out->gap_starts || !out->gap_ends)
			goto out;
		for (size_t i = 0; i < n; i++) {
			out->gap_starts[i] = g[2 * i];
			out->gap_ends[i] = g[2 * i + 1];
		}
		out->ngaps = n;
		out->wide = (uint32_t)w.gaps.wide;
	}
	rc = 0;
out:
	if (rc)
		aperture_eh_free(out);
	free(w.rows.p);
	free(w.causes.p);
	free(w.gaps.out.p);
	free(fdes.p);
	free(a.v);
	free(b.v);
	free(cc);
	return rc;
}

/* layout.py's bucket index: bucket b's entry (every `stride` words of out) is the
 * last row whose pc (every `stride` words of rows) is at most (first + b) << shift,
 * 0 when none is; rows sorted by pc. */
void aperture_bucket_index(const uint32_t *rows, uint64_t nrows, uint32_t stride,
			   uint64_t first, uint64_t nb, uint32_t shift, uint32_t *out)
{
	uint64_t i = 0;

	for (uint64_t b = 0; b < nb; b++) {
		uint64_t start = (first + b) << shift;

		while (i < nrows && rows[i * stride] <= start)
			i++;
		out[b * stride] = i ? (uint32_t)(i - 1) : 0;
	}
}

/* The keys start, start + 1, ... of n array entries (a batch write's keys). */
void aperture_iota(uint32_t *out, uint64_t n, uint32_t start)
{
	for (uint64_t i = 0; i < n; i++)
		out[i] = start + (uint32_t)i;
}

/* n rows of src_size bytes, back to back, into slots of dst_size bytes (an array
 * map's elements as mapped into memory: each value rounded up to 8 bytes). */
void aperture_spread_rows(const uint8_t *src, uint64_t n, uint32_t src_size, uint32_t dst_size,
			  uint8_t *dst)
{
	for (uint64_t i = 0; i < n; i++)
		memcpy(dst + i * dst_size, src + i * src_size, src_size);
}
