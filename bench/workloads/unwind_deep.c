/* A CPU-bound call chain ten frames deep for bench/unwind.py, built there with
 * gcc -O2 -fomit-frame-pointer: rbp is a general register in every function,
 * so only the .eh_frame tables can unwind these stacks (frame pointers stop at
 * the leaf). Each level keeps a volatile local and works after its call, so
 * gcc neither inlines the chain nor turns it into tail calls.
 *
 * Usage: unwind_deep [SECONDS]  (default: until killed)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))

static volatile unsigned long sink;

NOINLINE static unsigned long leaf(unsigned long x)
{
	for (int i = 0; i < 4000; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

/* A level: a stack slot of its own (a different CFA offset per frame), the
 * call, then work on the result. */
#define LEVEL(name, next)                                            \
	NOINLINE static unsigned long name(unsigned long x)          \
	{                                                            \
		volatile unsigned long pad[3] = { x, x >> 1, x << 1 }; \
		unsigned long r = next(x ^ pad[1]);                  \
		return r * 31 + pad[2];                              \
	}

LEVEL(level1, leaf)
LEVEL(level2, level1)
LEVEL(level3, level2)
LEVEL(level4, level3)
LEVEL(level5, level4)
LEVEL(level6, level5)
LEVEL(level7, level6)
LEVEL(level8, level7)
LEVEL(level9, level8)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 0;
	double end = now_s() + seconds;
	unsigned long calls = 0;
	for (;;) {
		for (int i = 0; i < 1000; i++)
			sink = level9(sink + i);
		calls += 1000;
		if (seconds > 0 && now_s() >= end)
			break;
	}
	printf("calls %lu\n", calls);
	return 0;
}
