/* Spends most of its CPU time inside a signal handler, for unwinding through the
 * kernel's signal frame: main -> wait_loop -> interrupted_here is interrupted every
 * 10 ms of CPU time by SIGPROF (setitimer ITIMER_PROF), whose handler on_signal ->
 * burn_in_handler spins for 8 ms. Built without frame pointers by the tests. Runs for
 * argv[1] seconds (default: forever) and prints nothing. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#if defined(__clang__)
#define KEEP __attribute__((noinline))
#else
#define KEEP __attribute__((noinline, noclone))
#endif

#define HANDLER_NS 8000000L /* of each 10 ms period */

static volatile uint64_t sink;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe, and a vDSO call */
	return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

KEEP void burn_in_handler(void)
{
	int64_t end = now_ns() + HANDLER_NS;
	do {
		/* Check the clock rarely so nearly all samples land in this loop. */
		for (int i = 0; i < 20000; i++)
			sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
	} while (now_ns() < end);
}

KEEP void on_signal(int signo)
{
	(void)signo;
	burn_in_handler();
	sink++; /* not a tail call: on_signal stays on the stack */
}

KEEP void interrupted_here(void)
{
	for (int i = 0; i < 100000; i++)
		sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
}

KEEP void wait_loop(double seconds)
{
	int64_t end = now_ns() + (int64_t)(seconds * 1e9);
	while (now_ns() < end) {
		interrupted_here();
		sink++;
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 1e9;
	struct sigaction sa;
	struct itimerval period = {{0, 10000}, {0, 10000}};

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGPROF, &sa, NULL) != 0 || setitimer(ITIMER_PROF, &period, NULL) != 0)
		return 1;
	wait_loop(seconds);
	sink++;
	return 0;
}
