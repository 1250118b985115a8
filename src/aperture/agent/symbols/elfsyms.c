/* An ELF file's function symbols, compiled: elf.py's _merge and _names_only
 * again, because in Python they cost node's 110k-entry .symtab 0.19 s and a
 * 57 MB peak of tuples. elf.py stays the reference (a test compares both on the
 * host's binaries and on damaged tables) and the fallback where this library is
 * not built. Every read is checked against the table it reads.
 *
 * Built with ehframe.c into the agent's _native.so (`make native`).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STT_FUNC 2
#define STT_GNU_IFUNC 10
#define STB_LOCAL 0
#define STB_WEAK 2

struct sym_result {
	uint64_t *starts;   /* sorted, one function per start */
	uint64_t *sizes;
	uint64_t *names;    /* offsets into strings */
	uint64_t n;
	uint8_t *strings;   /* the names alone, each ended by a NUL */
	uint64_t strings_len;
};

struct raw {
	uint64_t value, size, name;
	uint64_t order;     /* the entry's place over all tables: the sort is stable */
	int binding;
};

static uint64_t rd(const uint8_t *p, int size, int little)
{
	uint64_t v = 0;

	for (int i = 0; i < size; i++)
		v |= (uint64_t)p[i] << (8 * (little ? i : size - 1 - i));
	return v;
}

static int by_value(const void *a, const void *b)
{
	const struct raw *x = a, *y = b;

	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* A name as _rank reads it: to its NUL, or (no NUL) to one short of the end. */
static void rank_name(const uint8_t *s, uint64_t len, uint64_t off, uint64_t *from, uint64_t *n)
{
	const uint8_t *z = off < len ? memchr(s + off, 0, len - off) : NULL;
	uint64_t end = z ? (uint64_t)(z - s) : (len ? len - 1 : 0);

	*from = off;
	*n = end > off ? end - off : 0;
}

/* elf.py's _rank, as a comparison: <0 when a is preferred (perf's choice among
 * aliases: non-weak, global, fewer leading '_', longer name). */
static int rank_cmp(const struct raw *a, const struct raw *b, const uint8_t *s, uint64_t len)
{
	uint64_t fa, na, fb, nb, ua = 0, ub = 0;
	int ka[2] = {a->binding == STB_WEAK, a->binding == STB_LOCAL};
	int kb[2] = {b->binding == STB_WEAK, b->binding == STB_LOCAL};

	for (int i = 0; i < 2; i++)
		if (ka[i] != kb[i])
			return ka[i] - kb[i];
	rank_name(s, len, a->name, &fa, &na);
	rank_name(s, len, b->name, &fb, &nb);
	while (ua < na && s[fa + ua] == '_')
		ua++;
	while (ub < nb && s[fb + ub] == '_')
		ub++;
	if (ua != ub)
		return ua < ub ? -1 : 1;
	if (na != nb)
		return na > nb ? -1 : 1;
	return 0;
}

void aperture_syms_free(struct sym_result *r)
{
	free(r->starts);
	free(r->sizes);
	free(r->names);
	free(r->strings);
	memset(r, 0, sizeof(*r));
}

/* The sized FUNC/IFUNC symbols of ntables symbol tables (each with its string
 * table and entry size; a table of another entry size is skipped), one per start
 * address. 0: done (free with aperture_syms_free); -1: out of memory. */
int aperture_elf_functions(const uint8_t *const *symbols, const uint64_t *symbols_len,
			   const uint8_t *const *strings, const uint64_t *strings_len,
			   const uint64_t *entsize, uint32_t ntables, int little, int wide,
			   struct sym_result *out)
{
	int width = wide ? 24 : 16;
	uint64_t total = 0, count = 0, base = 0, order = 0, kept = 0, at = 0, blob = 0;
	struct raw *raw = NULL;
	uint8_t *all = NULL;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	for (uint32_t t = 0; t < ntables; t++) {
		total += strings_len[t];
		if (entsize[t] == (uint64_t)width)
			count += symbols_len[t] / width;
	}
	all = malloc(total ? total : 1);
	raw = malloc((count ? count : 1) * sizeof(*raw));
	if (!all || !raw)
		goto done;
	for (uint64_t t = 0, pos = 0; t < ntables; t++) {
		if (strings_len[t])
			memcpy(all + pos, strings[t], strings_len[t]);
		pos += strings_len[t];
	}
	count = 0;
	for (uint32_t t = 0; t < ntables; t++) {
		const uint8_t *d = symbols[t];
		uint64_t n = entsize[t] == (uint64_t)width ? symbols_len[t] / width : 0;

		for (uint64_t i = 0; i < n; i++, d += width) {
			uint64_t name, value, size;
			int info, shndx;

			if (wide) {
				name = rd(d, 4, little);
				info = d[4];
				shndx = (int)rd(d + 6, 2, little);
				value = rd(d + 8, 8, little);
				size = rd(d + 16, 8, little);
			} else {
				name = rd(d, 4, little);
				value = rd(d + 4, 4, little);
				size = rd(d + 8, 4, little);
				info = d[12];
				shndx = (int)rd(d + 14, 2, little);
			}
			order++;
			if (!size || !shndx || ((info & 0xF) != STT_FUNC && (info & 0xF) != STT_GNU_IFUNC))
				continue;
			raw[count++] = (struct raw){value, size, name + base, order, info >> 4};
		}
		base += strings_len[t];
	}
	qsort(raw, count, sizeof(*raw), by_value);
	/* one per start: the preferred alias (the first of equals, as min() keeps) */
	for (uint64_t i = 0; i < count;) {
		uint64_t j = i + 1, best = i;

		while (j < count && raw[j].value == raw[i].value) {
			if (rank_cmp(&raw[j], &raw[best], all, total) < 0)
				best = j;
			j++;
		}
		raw[kept++] = raw[best];
		i = j;
	}
	/* the names alone (elf.py's _names_only): to the NUL, or to the end */
	for (uint64_t i = 0; i < kept; i++) {
		uint64_t off = raw[i].name;
		const uint8_t *z = off < total ? memchr(all + off, 0, total - off) : NULL;
		uint64_t n = off < total ? (z ? (uint64_t)(z - (all + off)) : total - off) : 0;

		blob += n + 1;
	}
	out->starts = malloc((kept ? kept : 1) * sizeof(uint64_t));
	out->sizes = malloc((kept ? kept : 1) * sizeof(uint64_t));
	out->names = malloc((kept ? kept : 1) * sizeof(uint64_t));
	out->strings = malloc(blob ? blob : 1);
	if (!out->starts || !out->sizes || !out->names || !out->strings)
		goto done;
	for (uint64_t i = 0; i < kept; i++) {
		uint64_t off = raw[i].name;
		const uint8_t *z = off < total ? memchr(all + off, 0, total - off) : NULL;
		uint64_t n = off < total ? (z ? (uint64_t)(z - (all + off)) : total - off) : 0;

		out->starts[i] = raw[i].value;
		out->sizes[i] = raw[i].size;
		out->names[i] = at;
		if (n)
			memcpy(out->strings + at, all + off, n);
		out->strings[at + n] = 0;
		at += n + 1;
	}
	out->n = kept;
	out->strings_len = blob;
	rc = 0;
done:
	if (rc)
		aperture_syms_free(out);
	free(all);
	free(raw);
	return rc;
}

/* ---- /proc/kallsyms (symbols/kernel.py) ------------------------------------ */

struct ksym_result {
	uint64_t *addrs;               /* the text symbols' addresses, in file order */
	uint64_t *ends;                /* entry i is text[ends[i - 1] (0 for i = 0), ends[i]) */
	uint64_t n;
	uint8_t *text;                 /* the entries, "name" or "name\t[mod]", back to back */
	uint64_t text_len;
};

void aperture_ksyms_free(struct ksym_result *r)
{
	free(r->addrs);
	free(r->ends);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

static int hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* kernel.py's _text_rows over a whole kallsyms text: lines "ADDR TYPE NAME[\t[MOD]]"
 * with ADDR `width` hex digits; text symbols (tTwW) kept, short or misaligned lines
 * dropped. 0: done (free with aperture_ksyms_free); 1: an address is not hex, or an
 * entry is not ASCII (parse it in Python then); -1: out of memory. */
int aperture_kallsyms(const uint8_t *data, uint64_t len, uint64_t width, struct ksym_result *out)
{
	uint64_t lines = 1, at = 0;

	memset(out, 0, sizeof(*out));
	if (width == 0 || width > 16)
		return 1;
	for (uint64_t i = 0; i < len; i++)
		lines += data[i] == '\n';
	out->addrs = malloc(lines * sizeof(uint64_t));
	out->ends = malloc(lines * sizeof(uint64_t));
	out->text = malloc(len ? len : 1);
	if (!out->addrs || !out->ends || !out->text) {
		aperture_ksyms_free(out);
		return -1;
	}
	while (at < len) {
		const uint8_t *line = data + at;
		const uint8_t *nl = memchr(line, '\n', len - at);
		uint64_t n = nl ? (uint64_t)(nl - line) : len - at;
		uint64_t addr = 0;
		uint8_t kind;

		at += n + 1;
		if (n <= width + 3 || line[width] != ' ')
			continue;
		kind = line[width + 1];
		if (kind != 't' && kind != 'T' && kind != 'w' && kind != 'W')
			continue;
		for (uint64_t i = 0; i < width; i++) {
			int d = hex_digit(line[i]);

			if (d < 0) {
				aperture_ksyms_free(out);
				return 1;
			}
			addr = addr << 4 | (uint64_t)d;
		}
		for (uint64_t i = width + 3; i < n; i++) {
			/* Python's splitlines also ends lines at \r, \v, \f and \x1c-\x1e */
			if (line[i] >= 0x80 || (line[i] < 0x20 && line[i] != '\t')) {
				aperture_ksyms_free(out);
				return 1;
			}
		}
		memcpy(out->text + out->text_len, line + width + 3, n - width - 3);
		out->text_len += n - width - 3;
		out->addrs[out->n] = addr;
		out->ends[out->n] = out->text_len;
		out->n++;
	}
	return 0;
}
