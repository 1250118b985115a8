/* Burns CPU without frame pointers, for DWARF (.eh_frame) unwinding to prove itself on:
 * main -> run -> hot_a and run -> hot_b in a 3:1 ratio of identical work (about 45% and
 * 15% of the time), run -> run_sort -> qsort -> ... -> cmp_ints (about 20%: libc frames
 * between two of ours) and run -> copy_loop -> memcpy (about 20%: a libc leaf). Runs for
 * argv[1] seconds (default: forever) and prints nothing.
 *
 * Built -O2 -fomit-frame-pointer by the tests, so every noinline below must stay a real
 * call that is not a tail call: each call is followed by a write to `sink`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__clang__)
#define KEEP __attribute__((noinline))
#else
/* noclone: gcc would otherwise emit hot_a.constprop.0 and the like under other names. */
#define KEEP __attribute__((noinline, noclone))
#endif

#define UNIT 1000000u         /* one unit of leaf work: ~1 ms */
#define SORT_N 4096           /* ints sorted per run_sort call */
#define SORT_ROUNDS 2         /* calibrated so run_sort costs about 1.3 units */
#define COPY_BYTES (4u << 20) /* 4 MiB: far past the caches, libc copies it all */
#define COPY_ROUNDS 9         /* calibrated so copy_loop costs about 1.3 units */

static volatile uint64_t sink;
static int sort_in[SORT_N], sort_buf[SORT_N];
static char *copy_src, *copy_dst;
/* Called through a volatile pointer: the compiler cannot inline or expand memcpy. */
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;

static KEEP void burn(uint64_t n)
{
	uint64_t x = sink;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

/* The leaves burn in their own body (not through burn()) so the sampled IP is theirs. */
KEEP void hot_a(void)
{
	for (uint64_t i = 0; i < 3 * UNIT; i++)
		sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
}

KEEP void hot_b(void)
{
	for (uint64_t i = 0; i < UNIT; i++)
		sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
}

/* A slow comparison, so most of qsort's time is spent here under libc's sort frames. */
KEEP int cmp_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	for (int i = 0; i < 40; i++)
		sink += (uint64_t)i;
	return (x > y) - (x < y);
}

KEEP void run_sort(void)
{
	for (int r = 0; r < SORT_ROUNDS; r++) {
		memcpy_fn(sort_buf, sort_in, sizeof sort_buf);
		qsort(sort_buf, SORT_N, sizeof sort_buf[0], cmp_ints);
		sink += (uint64_t)sort_buf[0];
	}
}

KEEP void copy_loop(void)
{
	for (int r = 0; r < COPY_ROUNDS; r++) {
		memcpy_fn(copy_dst, copy_src, COPY_BYTES);
		sink += (uint64_t)copy_dst[r];
	}
}

KEEP void run(void)
{
	hot_a();
	sink++;
	hot_b();
	sink++;
	run_sort();
	sink++;
	copy_loop();
	sink++;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1e9;
	struct timespec start, now;

	copy_src = malloc(COPY_BYTES);
	copy_dst = malloc(COPY_BYTES);
	if (!copy_src || !copy_dst)
		return 1;
	/* Touch every page now so the copies do not fault inside the profile. */
	memset(copy_src, 1, COPY_BYTES);
	memset(copy_dst, 2, COPY_BYTES);
	srand(1);
	for (int i = 0; i < SORT_N; i++)
		sort_in[i] = rand();
	burn(1);

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		run();
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	return 0;
}
