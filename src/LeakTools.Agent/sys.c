/* System primitives for code that runs inside allocation hooks: memory from mmap, futex locks,
 * clocks. Nothing here touches errno or allocates. */
#include "agent.h"

#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

void *lt_mmap(size_t size)
{
    long r = lt_syscall6(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r < 0 && r > -4096) return NULL;
    return (void *)r;
}

void lt_munmap(void *p, size_t size)
{
    if (p) lt_syscall3(SYS_munmap, p, size, 0);
}

int lt_grow(void **array, size_t *capacity, size_t used, size_t need, size_t element, size_t initial)
{
    if (need <= *capacity) return 1;
    size_t cap = *capacity ? *capacity : initial;
    while (cap < need) cap *= 2;
    void *n = lt_mmap(cap * element);
    if (!n) return 0;
    if (*array) {
        memcpy(n, *array, used * element);
        lt_munmap(*array, *capacity * element);
    }
    *array = n;
    *capacity = cap;
    return 1;
}

int lt_mprotect(void *p, size_t size, int prot)
{
    return (int)lt_syscall3(SYS_mprotect, p, size, prot);
}

int lt_gettid(void) { return (int)lt_syscall3(SYS_gettid, 0, 0, 0); }
int lt_getpid(void) { return (int)lt_syscall3(SYS_getpid, 0, 0, 0); }

void lt_futex_wait(_Atomic int *addr, int expected, long timeout_ns)
{
    struct timespec ts, *pts = NULL;
    if (timeout_ns > 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        pts = &ts;
    }
    lt_syscall6(SYS_futex, (long)addr, FUTEX_WAIT_PRIVATE, expected, (long)pts, 0, 0);
}

void lt_futex_wake(_Atomic int *addr, int count)
{
    lt_syscall6(SYS_futex, (long)addr, FUTEX_WAKE_PRIVATE, count, 0, 0, 0);
}

void lt_lock_slow(lt_lock *l)
{
    /* brief spin: the holders keep the lock for a few dozen instructions */
    for (int i = 0; i < 64; i++) {
        __builtin_ia32_pause();
        int c = 0;
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->v, &c, 1, memory_order_acquire, memory_order_relaxed))
            return;
    }
    int c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);
    while (c != 0) {
        lt_futex_wait(&l->v, 2, 0);
        c = atomic_exchange_explicit(&l->v, 2, memory_order_acquire);
    }
}

void lt_unlock_slow(lt_lock *l)
{
    atomic_store_explicit(&l->v, 0, memory_order_release);
    lt_futex_wake(&l->v, 1);
}

/* clock_gettime goes through the vDSO: no system call, no errno unless it fails. */
uint64_t lt_now_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t lt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
