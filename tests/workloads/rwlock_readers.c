/* One writer and several readers on one pthread rwlock: the writer holds it
 * for HOLD_US per round in write_section, so readers wait for it.
 * Prints the rwlock's address, then "done" at exit.
 * usage: rwlock_readers GO_FILE READERS ROUNDS HOLD_US */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static int rounds, hold_us;
static volatile int stop;
static volatile uint64_t table[64];

__attribute__((noinline)) void write_section(int round)
{
	pthread_rwlock_wrlock(&table_lock);
	table[round % 64]++;
	usleep(hold_us);
	pthread_rwlock_unlock(&table_lock);
	__asm__ volatile("" ::: "memory"); /* no tail call: the unlock is made from here */
}

__attribute__((noinline)) uint64_t read_section(void)
{
	uint64_t sum = 0;

	pthread_rwlock_rdlock(&table_lock);
	for (int i = 0; i < 64; i++)
		sum += table[i];
	usleep(50);
	pthread_rwlock_unlock(&table_lock);
	__asm__ volatile("" ::: "memory");
	return sum;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!stop) {
		read_section();
		usleep(200);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	int n;

	if (argc < 5)
		return 2;
	n = atoi(argv[2]);
	rounds = atoi(argv[3]);
	hold_us = atoi(argv[4]);
	if (n < 1 || n > 64)
		return 2;
	printf("%p\n", (void *)&table_lock);
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	for (int i = 0; i < n; i++)
		pthread_create(&threads[i], NULL, reader, NULL);
	for (int i = 0; i < rounds; i++) {
		write_section(i);
		usleep(2000);
	}
	stop = 1;
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	printf("done\n");
	return 0;
}
