/* A pool of idle threads waiting on a condition variable while one thread
 * works: the worker signals the pool SIGNALS times (each woken thread finds
 * no job and waits again), then everyone is told to stop.
 * Prints the condition variable's address, then "done" at exit.
 * usage: condvar_pool GO_FILE IDLE_THREADS WORK_MS SIGNALS */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static int stopping;
static volatile uint64_t sink;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((noinline)) void wait_for_work(void)
{
	pthread_mutex_lock(&mutex);
	while (!stopping)
		pthread_cond_wait(&work_ready, &mutex);
	pthread_mutex_unlock(&mutex);
	__asm__ volatile("" ::: "memory");
}

static void *idle_worker(void *arg)
{
	(void)arg;
	wait_for_work();
	return NULL;
}

__attribute__((noinline)) void signal_pool(void)
{
	pthread_mutex_lock(&mutex);
	pthread_cond_signal(&work_ready);
	pthread_mutex_unlock(&mutex);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void busy_work(int work_ms, int signals)
{
	uint64_t start = now_ms(), next = 0;
	int sent = 0;

	while (now_ms() - start < (uint64_t)work_ms) {
		for (int i = 0; i < 100000; i++)
			sink += i;
		if (sent < signals && now_ms() - start >= next) {
			signal_pool();
			sent++;
			next = (uint64_t)work_ms * sent / (signals + 1);
		}
	}
	__asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	int n;

	if (argc < 5)
		return 2;
	n = atoi(argv[2]);
	if (n < 1 || n > 64)
		return 2;
	printf("%p\n", (void *)&work_ready);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, idle_worker, NULL);
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	busy_work(atoi(argv[3]), atoi(argv[4]));
	pthread_mutex_lock(&mutex);
	stopping = 1;
	pthread_cond_broadcast(&work_ready);
	pthread_mutex_unlock(&mutex);
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	printf("done\n");
	return 0;
}
