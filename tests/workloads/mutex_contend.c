/* N threads contend one pthread mutex, each holding it HOLD_US per round.
 * Prints the mutex address, then (at exit) the total time the threads spent
 * blocked in pthread_mutex_lock as measured here, in ns.
 * usage: mutex_contend GO_FILE THREADS ROUNDS HOLD_US */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t the_lock = PTHREAD_MUTEX_INITIALIZER;
static int rounds, hold_us;
static uint64_t waited_ns[64];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

__attribute__((noinline)) void contend(int id)
{
	uint64_t t0 = now_ns();

	pthread_mutex_lock(&the_lock);
	waited_ns[id] += now_ns() - t0;
	usleep(hold_us); /* the critical section */
	pthread_mutex_unlock(&the_lock);
}

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < rounds; i++)
		contend(id);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	int n;
	uint64_t total = 0;

	if (argc < 5)
		return 2;
	n = atoi(argv[2]);
	rounds = atoi(argv[3]);
	hold_us = atoi(argv[4]);
	if (n < 1 || n > 64)
		return 2;
	printf("%p\n", (void *)&the_lock);
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	for (int i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < n; i++)
		total += waited_ns[i];
	printf("%llu\n", (unsigned long long)total);
	return 0;
}
