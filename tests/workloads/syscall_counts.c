/* After GO_FILE appears: exactly K getppid() and M open() calls that fail with
 * ENOENT, then exit. usage: syscall_counts GO_FILE K M */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long k, m;

	if (argc < 4)
		return 2;
	k = atol(argv[2]);
	m = atol(argv[3]);
	while (access(argv[1], F_OK) != 0)
		usleep(10000);
	for (long i = 0; i < k; i++)
		syscall(SYS_getppid);
	for (long i = 0; i < m; i++)
		if (open("/nonexistent/aperture-test", O_RDONLY) >= 0)
			return 1;
	return 0;
}
