/* Thread and process churn for SECONDS: short threads that contend a mutex and
 * make syscalls, a thread killed while blocked in read() (exit_group mid-
 * syscall), and execve of /bin/true. usage: churn SECONDS */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *short_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++) {
		pthread_mutex_lock(&lock);
		getppid();
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void *blocked_reader(void *arg)
{
	char c;

	read(*(int *)arg, &c, 1); /* never returns: the process exits under it */
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 60;
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long loop = 0;; loop++) {
		pthread_t threads[8];
		pid_t child;

		for (int i = 0; i < 8; i++)
			pthread_create(&threads[i], NULL, short_thread, NULL);
		for (int i = 0; i < 8; i++)
			pthread_join(threads[i], NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
			break;
		if (loop % 16) /* processes are churned too, but less often than threads */
			continue;

		child = fork();
		if (child == 0) {
			int fds[2];
			pthread_t reader;

			if (pipe(fds) == 0)
				pthread_create(&reader, NULL, blocked_reader, &fds[0]);
			usleep(1000);
			_exit(0); /* exit_group while the reader sits in read() */
		}
		waitpid(child, NULL, 0);
		child = fork();
		if (child == 0) {
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		waitpid(child, NULL, 0);
	}
	return 0;
}
