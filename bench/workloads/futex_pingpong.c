/* A futex storm: two threads hand a turn back and forth ROUNDS times through
 * one pthread mutex and condition variable, so nearly every hand-off is a
 * futex wait in one thread and a futex wake in the other.
 *
 * Usage: futex_pingpong ROUNDS. Prints the elapsed ns of the ping-pong alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int turn;
static long rounds;

static void *player(void *arg)
{
	int me = (int)(long)arg;

	for (long i = 0; i < rounds; i++) {
		pthread_mutex_lock(&lock);
		while (turn != me)
			pthread_cond_wait(&changed, &lock);
		turn = !me;
		pthread_cond_signal(&changed);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t other;

	rounds = argc > 1 ? atol(argv[1]) : 100000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_create(&other, NULL, player, (void *)1L);
	player((void *)0L);
	pthread_join(other, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("elapsed_ns %lld rounds %ld\n",
	       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec),
	       rounds);
	return 0;
}
