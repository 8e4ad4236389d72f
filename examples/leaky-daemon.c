/* leaky-daemon: a small request-handling daemon with a memory leak, for LeakTools demos.
 *
 *   leaky-daemon [requests-per-second] [leak-every-nth-request] [buffer-bytes]
 *
 * Every request opens a session (calloc + strdup + malloc of a buffer) and closes it again, but
 * every nth request forgets the buffer: session_close() frees the struct and the user name, not
 * the buffer. With the defaults it leaks 16 KiB 100 times a second, about 1.6 MiB/s, the way a
 * daemon creeps from a few MB to gigabytes. Ends on SIGTERM/SIGINT, or when its parent dies. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

struct session {
    char *user;
    char *buffer;
    size_t length;
};

static volatile sig_atomic_t running = 1;
static size_t buffer_bytes = 16384;

static void on_signal(int sig) { (void)sig; running = 0; }

static struct session *session_open(const char *user)
{
    struct session *s = calloc(1, sizeof *s);
    s->user = strdup(user);
    s->buffer = malloc(buffer_bytes);
    memset(s->buffer, 'x', buffer_bytes); /* touch it, so the leak shows in Rss/Pss */
    s->length = buffer_bytes;
    return s;
}

static void session_close(struct session *s, int forget_buffer)
{
    if (!forget_buffer)
        free(s->buffer); /* the bug: on the error path the buffer is never freed */
    free(s->user);
    free(s);
}

static unsigned long handle_request(unsigned long n, unsigned long leak_every)
{
    struct session *s = session_open(n % 3 ? "alice" : "bob");
    unsigned long sum = (unsigned char)s->buffer[n % s->length] + strlen(s->user);
    int error_path = leak_every && n % leak_every == 0;
    session_close(s, error_path);
    return sum;
}

int main(int argc, char **argv)
{
    long rate = argc > 1 ? atol(argv[1]) : 200;
    unsigned long leak_every = argc > 2 ? strtoul(argv[2], NULL, 10) : 2;
    if (argc > 3) buffer_bytes = strtoul(argv[3], NULL, 10);
    if (rate < 1) rate = 1;

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("READY pid=%d rate=%ld leak_every=%lu buffer=%zu\n", (int)getpid(), rate, leak_every, buffer_bytes);
    fflush(stdout);

    struct timespec tick = { 0, 1000000000L / rate };
    unsigned long n = 0, checksum = 0;
    while (running) {
        checksum += handle_request(++n, leak_every);
        nanosleep(&tick, NULL);
    }
    printf("handled %lu requests, checksum %lu\n", n, checksum);
    return 0;
}
