/* Burns CPU in hot_a and hot_b in a 3:1 ratio of identical work, forever or for
 * argv[1] seconds. Built with frame pointers so the whole chain up to main unwinds. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static volatile uint64_t sink;

static __attribute__((noinline)) void spin(uint64_t n)
{
	uint64_t x = sink;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

/* Each unit of work is the same loop, so 3 calls cost 3x one call. */
__attribute__((noinline)) void hot_a(void) { for (int i = 0; i < 3; i++) spin(200000); }
__attribute__((noinline)) void hot_b(void) { spin(200000); }

__attribute__((noinline)) void run_cycle(void)
{
	hot_a();
	hot_b();
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1e9;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		run_cycle();
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
	return 0;
}
