/* Allocation-heavy benchmark fixture for Watch-Allocation's engines.
 *   alloc-bench ITERATIONS WORK DEPTH [now]
 * Prints "READY pid=N", then (unless "now") waits for "go" on stdin (allocating a little every 10 ms meanwhile, as
 * a live process does, so an attach finds a moment to load the agent), then runs the loop: DEPTH
 * nested calls deep, each iteration mallocs 16..255 bytes, does WORK steps of arithmetic on the
 * block, frees it. Prints "RESULT ns_per_iteration checksum" (the loop alone is timed) and exits. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

__attribute__((noinline)) static unsigned loop(long n, int work)
{
    unsigned x = 12345, acc = 0;
    for (long i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        size_t size = 16 + (x >> 8) % 240;
        unsigned char *p = malloc(size);
        sink = p;
        p[0] = (unsigned char)x;
        p[size - 1] = (unsigned char)(x >> 16);
        unsigned y = x;
        for (int k = 0; k < work; k++) {
            y = y * 1664525u + 1013904223u;
            p[k % size] += (unsigned char)(y >> 24);
        }
        acc += p[0] + p[size - 1];
        free(p);
    }
    return acc;
}

__attribute__((noinline)) static unsigned nest(int depth, long n, int work)
{
    if (depth <= 0) return loop(n, work);
    unsigned r = nest(depth - 1, n, work);
    __asm__ volatile("" ::: "memory");
    return r + 1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int work = argc > 2 ? atoi(argv[2]) : 0;
    int depth = argc > 3 ? atoi(argv[3]) : 10;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY pid=%d\n", getpid());
    char line[64];
    int now = argc > 4 && strcmp(argv[4], "now") == 0;
    while (!now) {
        struct pollfd p = { 0, POLLIN, 0 };
        if (poll(&p, 1, 10) > 0) {
            if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) == 0) break;
        }
        sink = malloc(64);
        free(sink);
    }
    double t0 = now_ns();
    unsigned sum = nest(depth, n, work);
    double t1 = now_ns();
    printf("RESULT %.2f %u\n", (t1 - t0) / n, sum);
    return 0;
}
