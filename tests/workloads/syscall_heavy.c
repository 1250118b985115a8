/* Reads /dev/zero one byte at a time for argv[1] seconds: most time is in the
 * kernel, under read_loop. */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) void read_loop(int fd, double seconds)
{
	char buf[1];
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int i = 0; i < 1000; i++)
			if (read(fd, buf, sizeof(buf)) != 1)
				exit(1);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
}

int main(int argc, char **argv)
{
	int fd = open("/dev/zero", O_RDONLY);

	if (fd < 0)
		return 1;
	read_loop(fd, argc > 1 ? atof(argv[1]) : 3.0);
	return 0;
}
