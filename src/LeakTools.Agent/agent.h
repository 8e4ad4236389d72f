/* LeakTools in-process allocation agent: shared declarations.
 *
 * Rules for everything a hook can reach (glibc manual, "Replacing malloc"):
 *  - no allocation (no stdio, no dlsym/dlopen, no pthread_setspecific), memory comes from mmap;
 *  - only initial-exec TLS (a few words: see t_* below), so no __tls_get_addr;
 *  - no lock the allocator's callers may hold (stdio, dl_load_lock); our own locks are futexes
 *    taken for a bounded time, never while calling out;
 *  - system calls are issued inline (lt_syscall*), so errno and cancellation are untouched.
 */
#ifndef LEAKTOOLS_AGENT_H
#define LEAKTOOLS_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define LT_HIDDEN __attribute__((visibility("hidden")))
#define LT_EXPORT __attribute__((visibility("default")))
#define LT_LIKELY(x) __builtin_expect(!!(x), 1)
#define LT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define LT_MAX_DEPTH 128

/* ---- inline system calls (no errno, no cancellation point) ---- */
static inline long lt_syscall6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define lt_syscall3(n, a, b, c) lt_syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

LT_HIDDEN void *lt_mmap(size_t size);          /* anonymous rw, NULL on failure */
LT_HIDDEN void lt_munmap(void *p, size_t size);
/* Grows an mmap'd array to at least `need` elements (doubling, from `initial`), keeping the first
 * `used`; 0 when no memory could be mapped. */
LT_HIDDEN int lt_grow(void **array, size_t *capacity, size_t used, size_t need, size_t element, size_t initial);
LT_HIDDEN int lt_mprotect(void *p, size_t size, int prot);
LT_HIDDEN int lt_gettid(void);
LT_HIDDEN int lt_getpid(void);

/* ---- futex lock (Drepper, "Futexes are tricky", mutex #2) ---- */
typedef struct { _Atomic int v; } lt_lock;
LT_HIDDEN void lt_lock_slow(lt_lock *l);
LT_HIDDEN void lt_unlock_slow(lt_lock *l);
static inline void lt_lock_take(lt_lock *l)
{
    int c = 0;
    if (LT_LIKELY(atomic_compare_exchange_strong_explicit(&l->v, &c, 1, memory_order_acquire, memory_order_relaxed))) return;
    lt_lock_slow(l);
}
static inline void lt_lock_release(lt_lock *l)
{
    if (LT_UNLIKELY(atomic_fetch_sub_explicit(&l->v, 1, memory_order_release) != 1)) lt_unlock_slow(l);
}
LT_HIDDEN void lt_futex_wait(_Atomic int *addr, int expected, long timeout_ns);
LT_HIDDEN void lt_futex_wake(_Atomic int *addr, int count);

/* ---- time ---- */
LT_HIDDEN uint64_t lt_now_coarse(void);  /* CLOCK_MONOTONIC_COARSE, ns: per event */
LT_HIDDEN uint64_t lt_now(void);         /* CLOCK_MONOTONIC, ns */

/* ---- per-thread state (initial-exec TLS, zero in every new thread) ---- */
extern LT_HIDDEN __thread int t_in_hook __attribute__((tls_model("initial-exec")));

/* ---- configuration of the running session ---- */
struct lt_config {
    uint64_t expire_ns;
    uint64_t sample_interval;   /* bytes; 0 = every allocation */
    uint64_t tick_ns;           /* how often the agent thread scans for expiry and reports */
    uint32_t depth;             /* frames kept per stack (includes the allocator entry) */
    uint32_t flags;             /* LT_CONFIG_* (protocol.h) as the agent honours them */
};
extern LT_HIDDEN struct lt_config lt_cfg;
/* Checked frees (launch mode, no sampling): every free has its stack and is judged. */
#define LT_CHECKING() (LT_UNLIKELY(lt_cfg.flags & 1u /* LT_CONFIG_CHECK_FREES */))

/* Hooks test this first; 0 = pass straight through. */
extern LT_HIDDEN _Atomic int lt_enabled;

/* ---- global counters (relaxed atomics) ---- */
struct lt_totals {
    _Atomic uint64_t allocations, frees, unknown_frees, failed_allocations, forks, stack_overflow, sampled_skips;
};
extern LT_HIDDEN struct lt_totals lt_totals;

/* ---- real allocator entry points ---- */
enum lt_fn {
    LT_MALLOC, LT_CALLOC, LT_REALLOC, LT_REALLOCARRAY, LT_FREE, LT_CFREE, LT_POSIX_MEMALIGN,
    LT_ALIGNED_ALLOC, LT_MEMALIGN, LT_VALLOC, LT_PVALLOC, LT_DLOPEN, LT_DLMOPEN, LT_DLCLOSE, LT_FN_COUNT
};
extern LT_HIDDEN const char *const lt_fn_names[LT_FN_COUNT];
extern LT_HIDDEN void *lt_real[LT_FN_COUNT];   /* the functions the program called before us */
extern LT_HIDDEN void *const lt_hooks[LT_FN_COUNT];
extern LT_HIDDEN void *lt_dladdr;   /* not hooked: the agent thread uses it to wait for the loader lock */

/* ---- modules and relocation slots (got.c) ---- */
LT_HIDDEN int lt_resolve_real(void);          /* fills lt_real; returns count of allocator functions found */
LT_HIDDEN int lt_patch_all(void);             /* patches new slots in every module; returns slots now hooked */
LT_HIDDEN void lt_restore_all(void);          /* writes every original pointer back */
LT_HIDDEN int lt_verify_slots(void);          /* re-hooks slots lazy binding overwrote; returns count fixed */
LT_HIDDEN uint32_t lt_hooked_slots(void);
LT_HIDDEN uint32_t lt_foreign_slots(void);
LT_HIDDEN int lt_modules_changed(void);       /* dlopen/dlclose since the last call (dl_iterate_phdr counters) */
LT_HIDDEN int lt_allocator_is_glibc(void);    /* malloc and free are glibc's (__libc_malloc, __libc_free) */
LT_HIDDEN void lt_after_dlclose_prune(void);
LT_HIDDEN void lt_patch_reset_lock(void);
LT_HIDDEN void lt_restore_in_child(void);
LT_HIDDEN void lt_stacks_reset_lock(void);

/* ---- unwinder (unwind.c) ---- */
LT_HIDDEN void lt_unwind_refresh_modules(void);
LT_HIDDEN int lt_unwind_from(uintptr_t pc, uintptr_t sp, uintptr_t bp, uintptr_t *out, int max);
LT_HIDDEN void lt_unwind_flush_cache(void);
LT_HIDDEN int lt_unwind_init(void);
/* The stack id of an allocation by function `fn` (entry address `entry`) from the hook's caller,
 * unwinding at most depth-1 return addresses; reuses the thread's last walk when nothing changed. */
LT_HIDDEN uint32_t lt_stack_of(uintptr_t entry, uint32_t fn, uintptr_t pc, uintptr_t sp, uintptr_t bp, uint32_t depth);
LT_HIDDEN void lt_walk_invalidate(void);
LT_HIDDEN int lt_code_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi);

/* ---- stacks (stacks.c) ---- */
/* Counters the hooks update, striped by thread (one cache line per stack and stripe), so threads
 * allocating from the same stack on different CPUs do not fight over one line. */
#define LT_STRIPES 8
struct lt_hot_counters {
    _Atomic uint64_t alloc_count, alloc_bytes, free_count, free_bytes, fae_count, fae_bytes;  /* fae: freed after expiry */
    uint64_t pad[2];
};
/* Counters of the agent thread (expiry) and of sampled blocks (estimates, counts in 1/1024). */
struct lt_cold_counters {
    _Atomic uint64_t expired_count, expired_bytes;
    _Atomic uint64_t est_alloc_count, est_alloc_bytes, est_free_count, est_free_bytes;
    _Atomic uint64_t est_expired_count, est_expired_bytes, est_fae_count, est_fae_bytes;
};
struct lt_stack {
    uint64_t hash;
    uint32_t id;
    uint32_t depth;
    uintptr_t frames[];
};
struct lt_rec_counter;
LT_HIDDEN int lt_stacks_init(void);
LT_HIDDEN uint32_t lt_stack_intern(const uintptr_t *frames, uint32_t depth);
LT_HIDDEN uint32_t lt_stack_count(void);                 /* highest id in use */
LT_HIDDEN const struct lt_stack *lt_stack_get(uint32_t id);
LT_HIDDEN struct lt_hot_counters *lt_hot(uint32_t id);    /* this thread's stripe */
LT_HIDDEN struct lt_cold_counters *lt_cold(uint32_t id);
LT_HIDDEN void lt_counters_read(uint32_t id, struct lt_rec_counter *out);
LT_HIDDEN void lt_stacks_reset_counters(void);

/* ---- live table (live.c) ---- */
struct lt_block {
    uintptr_t ptr;
    uint64_t size;
    uint64_t time;
    uint32_t stack;
    uint32_t flags;   /* LT_BLOCK_* */
};
#define LT_BLOCK_EXPIRED 1u
#define LT_BLOCK_SAMPLED 2u
#define LT_BLOCK_ADOPTED 4u   /* allocated before the hooks (checked frees): not counted, never expires */
LT_HIDDEN int lt_live_init(void);
LT_HIDDEN void lt_live_insert(uintptr_t ptr, uint64_t size, uint32_t stack, uint32_t flags, uint64_t now);
LT_HIDDEN int lt_live_remove(uintptr_t ptr, struct lt_block *out);   /* 1 if it was there */
/* Sampling: a counting filter of the sampled live blocks, so free() skips the table for others. */
#define LT_FILTER_BITS 22
extern LT_HIDDEN _Atomic uint8_t *lt_live_filter;
#define LT_LIVE_SHARD_BITS 9   /* the live table's shards (live.c) */
#define LT_FREED_BITS 8        /* freed-cache slots per shard (live.c) */
extern LT_HIDDEN struct lt_freed *lt_freed_cache;      /* checked frees: recently freed blocks (live.c) */
static inline uint64_t lt_live_mix(uintptr_t p)
{
    uint64_t x = (uint64_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}
static inline int lt_live_may_hold(uintptr_t ptr)
{
    return atomic_load_explicit(&lt_live_filter[(lt_live_mix(ptr) >> 8) & ((1u << LT_FILTER_BITS) - 1)], memory_order_relaxed) != 0;
}
/* Checked frees: recently freed blocks, a direct-mapped cache per shard under the shard's lock. */
struct lt_freed {
    uintptr_t ptr;
    uint64_t size;
    uint32_t alloc_stack;
    uint32_t free_stack;
};
LT_HIDDEN int lt_freed_init(void);
/* 1: live (*out filled; now remembered as freed by free_stack); 2: not live but freed recently
 * (*first filled, forgotten); 0: neither. */
LT_HIDDEN int lt_live_remove_checked(uintptr_t ptr, uint32_t free_stack, struct lt_block *out, struct lt_freed *first);
/* A block allocated before the hooks: inserted (LT_BLOCK_ADOPTED) unless the address is live. */
LT_HIDDEN void lt_live_adopt(uintptr_t ptr, uint64_t size);
typedef int (*lt_expire_fn)(const struct lt_block *b, void *ctx);      /* 0: full, called with NULL to flush */
LT_HIDDEN void lt_live_expire(uint64_t older_than, lt_expire_fn fn, void *ctx);
LT_HIDDEN void lt_live_clear(void);
LT_HIDDEN void lt_live_stats(uint64_t *blocks, uint64_t *bytes);
LT_HIDDEN void lt_live_reset_locks(void);

/* ---- what a reader of a core needs (coreinfo.c) ---- */
/* A field of a struct as the compiler laid it out. */
struct lt_core_field {
    uint32_t offset;
    uint32_t size;
};
/* Where the live table's shards are and how a shard is laid out (defined in live.c, beside the
 * private struct shard). Writable on purpose: .data is in every core, .rodata is not. */
struct lt_core_live {
    const void *shards;             /* shard 0 */
    uint32_t shard_count;
    uint32_t shard_size;            /* stride of the array */
    struct lt_core_field capacity;  /* slots in `entries` (a power of two, or 0) */
    struct lt_core_field count;     /* blocks in the shard */
    struct lt_core_field entries;   /* pointer to `capacity` struct lt_block; ptr 0 = empty slot */
};
extern LT_HIDDEN struct lt_core_live lt_core_live;
/* The stack records (stacks.c): records[id] for id 1..count. */
extern LT_HIDDEN struct lt_stack *_Atomic *s_records;
extern LT_HIDDEN _Atomic uint32_t s_count;

/* ---- sampling weights ---- */
LT_HIDDEN uint64_t lt_sample_weight_x1024(uint64_t size);  /* 1024 / P(sampled | size) */

/* ---- agent lifecycle (agent.c, channel.c) ---- */
LT_HIDDEN void lt_record_alloc(void *p, uint64_t size, enum lt_fn fn, uintptr_t caller_pc, uintptr_t caller_sp, uintptr_t caller_bp);
LT_HIDDEN void lt_record_free(void *p);
struct lt_rec_problem;
/* A bad free, before the real call: hands it to the controller and waits (bounded) for its answer. */
LT_HIDDEN void lt_report_problem(const struct lt_rec_problem *p);
/* Checked frees: is p in the part of the heap allocated before the hooks that could not be read? */
LT_HIDDEN int lt_early_heap(uintptr_t p);
LT_HIDDEN void lt_after_dlopen(void);
LT_HIDDEN void lt_after_dlclose(void);
LT_HIDDEN void lt_detect_shadow_stack(void);

#endif
