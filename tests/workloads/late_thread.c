/* Idles in main until the file argv[1] exists, then starts a thread that burns
 * CPU in late_thread_work for argv[2] seconds: proves --pid follows new threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;
static double seconds;

__attribute__((noinline)) void late_thread_work(void)
{
	struct timespec start, now;
	uint64_t x = 1;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1;
		sink = x;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
}

static void *thread_main(void *arg)
{
	(void)arg;
	late_thread_work();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t thread;

	if (argc < 3)
		return 2;
	seconds = atof(argv[2]);
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	pthread_create(&thread, NULL, thread_main, NULL);
	pthread_join(thread, NULL);
	return 0;
}
