/* A context-switch storm: two threads hand one byte back and forth over two
 * pipes ROUNDS times. Pinned to one CPU, each round is two blocking reads and
 * two context switches.
 *
 * Usage: pipe_pingpong ROUNDS. Prints the elapsed ns of the ping-pong alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static long rounds;

static void *bounce(void *arg)
{
	char c;

	(void)arg;
	for (long i = 0; i < rounds; i++)
		if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
			exit(1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t other;
	char c = 1;

	rounds = argc > 1 ? atol(argv[1]) : 100000;
	if (pipe(ping) || pipe(pong))
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_create(&other, NULL, bounce, NULL);
	for (long i = 0; i < rounds; i++)
		if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
			return 1;
	pthread_join(other, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("elapsed_ns %lld rounds %ld\n",
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec),
	       rounds);
	return 0;
}
