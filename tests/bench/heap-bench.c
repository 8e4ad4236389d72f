/* heap-bench: a big heap for the Find-LeakedAllocation benchmark: BLOCKS blocks of 64-2047 bytes
 * (about 1 KiB on average, so 1 M blocks make ~1 GiB), each holding a pointer to another block
 * and data that is not pointers. Every 20th block is leaked (a few of them in pairs that point at
 * each other), every 50th is freed. Prints READY pid=P leaked=N and waits until stdin closes.
 *
 *   heap-bench [BLOCKS] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void **kept;

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    kept = calloc((size_t)n, sizeof *kept);
    uint64_t seed = 88172645463325252ull;
    long leaked = 0;
    void *pending = NULL;
    for (long i = 0; i < n; i++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        size_t size = 64 + (size_t)(seed % 1984);
        uint64_t *b = malloc(size);
        size_t words = size / 8;
        for (size_t w = 1; w < words; w++) b[w] = (seed + w) & 0xffffffffu; /* data, not pointers */
        b[0] = i > 0 && kept[i - 1] ? (uint64_t)kept[(seed >> 20) % (uint64_t)i] : 0;
        if (i % 20 == 7) {
            leaked++;
            if (pending) { b[1] = (uint64_t)pending; ((uint64_t *)pending)[1] = (uint64_t)b; pending = NULL; } /* a leaked pair */
            else if (i % 40 == 7) pending = b;
            b[0] = 0;
            continue;
        }
        kept[i] = b;
    }
    for (long i = 3; i < n; i += 50) {
        if (!kept[i]) continue;
        /* unlink first: other blocks may point at it */
        for (long j = i + 1; j < n && j < i + 64; j++) if (kept[j] && ((void **)kept[j])[0] == kept[i]) ((void **)kept[j])[0] = NULL;
        free(kept[i]);
        kept[i] = NULL;
    }
    printf("READY pid=%d leaked=%ld\n", (int)getpid(), leaked);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
}
