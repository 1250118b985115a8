/* A fixed amount of CPU work for the CPU-profiler slowdown benchmark.
 *
 * Usage: cpu_spin ROUNDS. Prints the elapsed ns of the work loop alone (no exec
 * or loader time), so the benchmark compares the work itself. The work is a few
 * noinline calls deep so profilers unwind real (frame-pointer) stacks, and the
 * result is printed so the compiler cannot drop it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static __attribute__((noinline)) uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static __attribute__((noinline)) uint64_t inner(uint64_t seed, int n)
{
	uint64_t acc = seed;

	for (int i = 0; i < n; i++)
		acc = mix(acc + (uint64_t)i);
	return acc;
}

static __attribute__((noinline)) uint64_t outer(uint64_t seed, long rounds)
{
	uint64_t acc = seed;

	for (long r = 0; r < rounds; r++)
		acc ^= inner(acc, 1000);
	return acc;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 100000;
	struct timespec t0, t1;
	uint64_t result;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	result = outer(42, rounds);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("elapsed_ns %lld result %llu\n",
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec),
	       (unsigned long long)result);
	return 0;
}
