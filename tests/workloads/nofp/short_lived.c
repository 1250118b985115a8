/* Burns CPU in main -> brief_work -> brief_spin for argv[1] milliseconds (default 200),
 * then exits: a process whose unwind tables must be ready before it is gone. Built
 * without frame pointers by the tests; prints nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__clang__)
#define KEEP __attribute__((noinline))
#else
#define KEEP __attribute__((noinline, noclone))
#endif

static volatile uint64_t sink;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

KEEP void brief_spin(void)
{
	for (int i = 0; i < 100000; i++)
		sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
}

KEEP void brief_work(long ms)
{
	int64_t end = now_ns() + ms * 1000000L;
	while (now_ns() < end) {
		brief_spin();
		sink++;
	}
}

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 200;
	brief_work(ms);
	sink++;
	return 0;
}
