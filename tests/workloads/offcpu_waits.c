/* Waits of known kinds, for the off-CPU profiler's tests.
 *   offcpu_waits sleep SECONDS  sleep_a (30 ms nanosleep) and sleep_b (10 ms) in turn
 *   offcpu_waits pipe SECONDS   a thread blocked in read() on a pipe nobody writes
 *   offcpu_waits storm SECONDS  two threads ping-ponging one byte over two pipes
 * Prints its pid, then at the end the CPU time its threads used (ns, from
 * CLOCK_PROCESS_CPUTIME_ID) and the round trips made (storm). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static int ping[2], pong[2];
static volatile long trips;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void nap(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, 0);
}

__attribute__((noinline)) void sleep_a(void) { nap(30); }
__attribute__((noinline)) void sleep_b(void) { nap(10); }

__attribute__((noinline)) void *wait_for_pipe(void *arg)
{
	char c;
	(void)arg;
	/* as a server's thread would, block once the process has run a while (its
	 * libraries' unwind tables are built for the first samples) */
	for (int i = 0; i < 10; i++)
		nap(20);
	if (read(ping[0], &c, 1) < 0)
		perror("read");
	return 0;
}

__attribute__((noinline)) void *bounce(void *arg)
{
	char c = 0;
	(void)arg;
	while (read(ping[0], &c, 1) == 1 && c)
		if (write(pong[1], &c, 1) != 1)
			break;
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "sleep";
	double end;
	pthread_t t;
	struct timespec cpu;
	char c = 1;

	seconds = argc > 2 ? atof(argv[2]) : 5;
	if (pipe(ping) || pipe(pong))
		return 1;
	printf("%d\n", getpid());
	fflush(stdout);
	end = now_s() + seconds;
	if (!strcmp(mode, "sleep")) {
		while (now_s() < end) {
			sleep_a();
			sleep_b();
		}
	} else if (!strcmp(mode, "pipe")) {
		pthread_create(&t, 0, wait_for_pipe, 0);
		while (now_s() < end)
			nap(50);
		if (write(ping[1], &c, 1) != 1)
			return 1;
		pthread_join(t, 0);
	} else {
		pthread_create(&t, 0, bounce, 0);
		while (now_s() < end) {
			if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
				return 1;
			trips++;
		}
		c = 0;
		if (write(ping[1], &c, 1) != 1)
			return 1;
		pthread_join(t, 0);
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	printf("%lld %ld\n", (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec, trips);
	return 0;
}
