/* N threads contend one pthread mutex, each holding it HOLD_US per round.
 * Prints the mutex address; at exit, the total time the threads spent blocked
 * in pthread_mutex_lock and the median time a thread held the lock, both as
 * measured here, in ns (one per line).
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
static uint64_t *held_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* The critical section: the function that keeps the others waiting. */
__attribute__((noinline)) void hold_the_lock(int id, int round)
{
	uint64_t t0 = now_ns(), t1;

	pthread_mutex_lock(&the_lock);
	t1 = now_ns();
	waited_ns[id] += t1 - t0;
	usleep(hold_us);
	held_ns[id * rounds + round] = now_ns() - t1;
	pthread_mutex_unlock(&the_lock);
	__asm__ volatile("" ::: "memory"); /* no tail call: the unlock is made from here */
}

__attribute__((noinline)) void contend(int id)
{
	for (int i = 0; i < rounds; i++)
		hold_the_lock(id, i);
	__asm__ volatile("" ::: "memory");
}

static void *worker(void *arg)
{
	contend((int)(intptr_t)arg);
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
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
	if (n < 1 || n > 64 || rounds < 1)
		return 2;
	held_ns = calloc((size_t)n * rounds, sizeof(*held_ns));
	if (!held_ns)
		return 1;
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
	qsort(held_ns, (size_t)n * rounds, sizeof(*held_ns), by_value);
	printf("%llu\n%llu\n", (unsigned long long)total,
	       (unsigned long long)held_ns[(size_t)n * rounds / 2]);
	return 0;
}
