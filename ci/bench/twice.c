/* Two churn-ref instances at once in one guest, timed together: the C
 * side of ci/bench-workers.sh (churn-ref is ../shared/bench/churn-ref.c). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
	const char *n = argc > 1 ? argv[1] : "1000";
	double t0 = now();
	for (int i = 0; i < 2; i++) {
		if (fork() == 0) {
			int fd = open("/dev/null", 1); dup2(fd, 1);
			execl("/bin/churn-ref", "churn-ref", n, (char *)0);
			_exit(127);
		}
	}
	int st, ok = 0;
	while (wait(&st) > 0) ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	double dt = now() - t0;
	printf("twice: 2 x %s iterations in %.2f s: %.1f/s (%d ok)\n", n, dt, 2 * atof(n) / dt, ok);
	return ok == 2 ? 0 : 1;
}
