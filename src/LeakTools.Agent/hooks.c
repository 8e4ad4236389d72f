/* The hooks the relocation slots point at. Each passes straight through unless the agent is on
 * and this thread is not already inside a hook (the real functions call each other through
 * libc's own slots: reallocarray -> realloc). Blocks pass through unchanged, so pointers from
 * before the attach or after the detach stay valid for the real free(). A free is recorded before
 * the real free runs, so the address cannot be handed out again while we still hold it. With
 * checked frees (launch mode) a free also gets its stack, and a bad free is handed to the
 * controller before the real call, which may abort the process as it would untraced. */
#define _GNU_SOURCE
#include "agent.h"
#include "protocol.h"

#include <errno.h>
#include <string.h>

__thread int t_in_hook __attribute__((tls_model("initial-exec")));
static __thread int64_t t_countdown __attribute__((tls_model("initial-exec")));
static __thread uint64_t t_rng __attribute__((tls_model("initial-exec")));

_Atomic int lt_enabled;
struct lt_config lt_cfg = { 10000000000ull, 0, 100000000ull, 32, 0 };
struct lt_totals lt_totals;

typedef void *(*malloc_t)(size_t);
typedef void *(*calloc_t)(size_t, size_t);
typedef void *(*realloc_t)(void *, size_t);
typedef void *(*reallocarray_t)(void *, size_t, size_t);
typedef void (*free_t)(void *);
typedef int (*posix_memalign_t)(void **, size_t, size_t);
typedef void *(*memalign_t)(size_t, size_t);
typedef void *(*dlopen_t)(const char *, int);
typedef int (*dlclose_t)(void *);

#define REAL(f, t) ((t)lt_real[f])
#define ACTIVE() (LT_LIKELY(atomic_load_explicit(&lt_enabled, memory_order_relaxed) != 0) && !t_in_hook)
/* the hook's caller, as it will be once the hook returns (every hook keeps a frame pointer) */
#define CALLER (uintptr_t)__builtin_return_address(0), (uintptr_t)__builtin_frame_address(0) + 16, *(uintptr_t *)__builtin_frame_address(0)
#define HOOK __attribute__((noinline, used, optimize("no-omit-frame-pointer")))
/* With sampling, most allocations only count down the thread's byte budget and most frees find
 * nothing in the filter: both are decided here, without a call. */
#define UNSAMPLED(size) (lt_cfg.sample_interval && t_countdown > (int64_t)(size) && ((t_countdown -= (int64_t)(size)), 1))
#define NOT_SAMPLED_FREE(p) (lt_cfg.sample_interval && !lt_live_may_hold((uintptr_t)(p)))

/* ---------- sampling (byte interval, exponentially distributed, as jemalloc and tcmalloc) ---------- */

static double lt_log(double x)   /* natural log for x in (0, 1], ~1e-7 relative error */
{
    union { double d; uint64_t u; } v = { x };
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;   /* mantissa in [1, 2) */
    double m = v.d;
    if (m > 1.41421356237) { m *= 0.5; e++; }
    double s = (m - 1) / (m + 1), s2 = s * s;
    double t = s * (2 + s2 * (2.0 / 3 + s2 * (2.0 / 5 + s2 * (2.0 / 7 + s2 * (2.0 / 9 + s2 * (2.0 / 11))))));
    return t + e * 0.69314718055994530942;
}

static double lt_exp_neg(double x)  /* e^-x for x >= 0 */
{
    if (x > 700) return 0;
    double y = x / 0.69314718055994530942;
    int k = (int)y;
    double r = (y - k) * 0.69314718055994530942;   /* e^-x = 2^-k * e^-r, r in [0, ln2) */
    double t = 1, term = 1;
    for (int i = 1; i < 18; i++) { term *= -r / i; t += term; }
    union { double d; uint64_t u; } p = { 1.0 };
    p.u -= (uint64_t)k << 52;
    return t * p.d;
}

uint64_t lt_sample_weight_x1024(uint64_t size)
{
    double x = (double)size / (double)lt_cfg.sample_interval;
    double p = x < 1e-4 ? x * (1 - x / 2 + x * x / 6) : 1 - lt_exp_neg(x);
    if (p <= 0) return 1024;
    return (uint64_t)(1024.0 / p + 0.5);
}

static int64_t next_interval(void)
{
    if (t_rng == 0) t_rng = ((uint64_t)lt_gettid() << 32) ^ lt_now() ^ 0x9E3779B97F4A7C15ull;
    t_rng ^= t_rng << 13; t_rng ^= t_rng >> 7; t_rng ^= t_rng << 17;
    double u = ((t_rng >> 11) + 1) * (1.0 / 9007199254740993.0);   /* (0, 1] */
    int64_t n = (int64_t)(-lt_log(u) * (double)lt_cfg.sample_interval);
    return n > 0 ? n : 1;
}

/* ---------- recording ---------- */

static inline uint32_t stack_depth(void)
{
    uint32_t depth = lt_cfg.depth;
    if (depth < 2) depth = 2;
    if (depth > LT_MAX_DEPTH) depth = LT_MAX_DEPTH;
    return depth;
}

void lt_record_alloc(void *p, uint64_t size, enum lt_fn fn, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    uint32_t flags = 0;
    if (lt_cfg.sample_interval) {
        if (LT_UNLIKELY(t_countdown == 0)) t_countdown = next_interval();
        int64_t c = t_countdown - (int64_t)size;
        if (c > 0) { t_countdown = c; return; }
        while (c <= 0) c += next_interval();
        t_countdown = c;
        flags = LT_BLOCK_SAMPLED;
    }
    uint32_t id = lt_stack_of((uintptr_t)lt_real[fn], (uint32_t)fn, pc, sp, bp, stack_depth());
    struct lt_hot_counters *h = lt_hot(id);
    atomic_fetch_add_explicit(&h->alloc_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->alloc_bytes, size, memory_order_relaxed);
    if (flags & LT_BLOCK_SAMPLED) {
        struct lt_cold_counters *c = lt_cold(id);
        uint64_t w = lt_sample_weight_x1024(size);
        atomic_fetch_add_explicit(&c->est_alloc_count, w, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->est_alloc_bytes, w * size / 1024, memory_order_relaxed);
    }
    lt_live_insert((uintptr_t)p, size, id, flags, lt_now_coarse());
}

static void account_free(const struct lt_block *b)
{
    if (b->flags & LT_BLOCK_ADOPTED) return;   /* allocated before the hooks: never counted */
    struct lt_hot_counters *h = lt_hot(b->stack);
    atomic_fetch_add_explicit(&h->free_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->free_bytes, b->size, memory_order_relaxed);
    int expired = (b->flags & LT_BLOCK_EXPIRED) != 0;
    if (expired) {
        atomic_fetch_add_explicit(&h->fae_count, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->fae_bytes, b->size, memory_order_relaxed);
    }
    if (b->flags & LT_BLOCK_SAMPLED) {
        struct lt_cold_counters *c = lt_cold(b->stack);
        uint64_t w = lt_sample_weight_x1024(b->size);
        atomic_fetch_add_explicit(&c->est_free_count, w, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->est_free_bytes, w * b->size / 1024, memory_order_relaxed);
        if (expired) {
            atomic_fetch_add_explicit(&c->est_fae_count, w, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->est_fae_bytes, w * b->size / 1024, memory_order_relaxed);
        }
    }
}

void lt_record_free(void *p)
{
    if (lt_cfg.sample_interval && !lt_live_may_hold((uintptr_t)p)) return;
    struct lt_block b;
    if (!lt_live_remove((uintptr_t)p, &b)) {
        atomic_fetch_add_explicit(&lt_totals.unknown_frees, 1, memory_order_relaxed);
        return;
    }
    account_free(&b);
}

/* Checked frees: the stack of a free (free, cfree, or the release in realloc/reallocarray), and
 * the block out of the live table into the freed cache. A pointer that is neither live nor from
 * before the hooks is a bad free: a double free when the freed cache remembers its first free,
 * else an invalid free. It is reported before the real call. Returns 1 (*b filled) if live. */
static int take_checked(void *p, enum lt_fn fn, uintptr_t pc, uintptr_t sp, uintptr_t bp, struct lt_block *b)
{
    uint32_t id = lt_stack_of((uintptr_t)lt_real[fn], (uint32_t)fn, pc, sp, bp, stack_depth());
    struct lt_freed first;
    int r = lt_live_remove_checked((uintptr_t)p, id, b, &first);
    if (r == 1) return 1;
    atomic_fetch_add_explicit(&lt_totals.unknown_frees, 1, memory_order_relaxed);
    if (r == 0 && lt_early_heap((uintptr_t)p)) return 0;   /* may come from before the hooks */
    int twice = r == 2;
    struct lt_rec_problem problem = {
        twice ? LT_PROBLEM_DOUBLE_FREE : LT_PROBLEM_INVALID_FREE, (uint32_t)lt_gettid(), (uint64_t)(uintptr_t)p,
        twice ? first.size : 0, lt_now(), id, twice ? first.alloc_stack : 0, twice ? first.free_stack : 0, (uint32_t)fn,
    };
    lt_report_problem(&problem);
    return 0;
}

static void check_free(void *p, enum lt_fn fn, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    struct lt_block b;
    if (take_checked(p, fn, pc, sp, bp, &b)) account_free(&b);
}

/* realloc and reallocarray: the old block leaves the table before the real call (once the real
 * call frees it, another thread may get the same address); if the call fails it goes back. */
static int take_old(void *old, struct lt_block *b, enum lt_fn fn, uintptr_t pc, uintptr_t sp, uintptr_t bp)
{
    if (!old) return 0;
    if (LT_CHECKING()) return take_checked(old, fn, pc, sp, bp, b);
    if (lt_cfg.sample_interval && !lt_live_may_hold((uintptr_t)old)) return 0;
    return lt_live_remove((uintptr_t)old, b);
}

static void settle_old(void *old, int had, const struct lt_block *b, int failed)
{
    if (!old) return;
    if (failed) {
        if (had) lt_live_insert(b->ptr, b->size, b->stack, b->flags, b->time);
        return;
    }
    if (had) account_free(b);
    else if (!lt_cfg.sample_interval && !LT_CHECKING()) atomic_fetch_add_explicit(&lt_totals.unknown_frees, 1, memory_order_relaxed);
}

/* ---------- the hooks ---------- */

/* malloc, valloc, pvalloc: one size argument, a block of that size */
#define SIZE_HOOK(name, fn)                                                      \
    HOOK static void *name(size_t n)                                             \
    {                                                                            \
        if (!ACTIVE() || UNSAMPLED(n)) return REAL(fn, malloc_t)(n);             \
        t_in_hook = 1;                                                           \
        void *p = REAL(fn, malloc_t)(n);                                         \
        if (p) lt_record_alloc(p, n, fn, CALLER);                                \
        t_in_hook = 0;                                                           \
        return p;                                                                \
    }
SIZE_HOOK(h_malloc, LT_MALLOC)
SIZE_HOOK(h_valloc, LT_VALLOC)
SIZE_HOOK(h_pvalloc, LT_PVALLOC)

HOOK static void *h_calloc(size_t nmemb, size_t size)
{
    if (!ACTIVE()) return REAL(LT_CALLOC, calloc_t)(nmemb, size);
    t_in_hook = 1;
    void *p = REAL(LT_CALLOC, calloc_t)(nmemb, size);
    if (p) lt_record_alloc(p, (uint64_t)nmemb * size, LT_CALLOC, CALLER);
    t_in_hook = 0;
    return p;
}

HOOK static void *h_realloc(void *old, size_t n)
{
    if (!ACTIVE()) return REAL(LT_REALLOC, realloc_t)(old, n);
    t_in_hook = 1;
    struct lt_block b;
    int had = take_old(old, &b, LT_REALLOC, CALLER);
    void *p = REAL(LT_REALLOC, realloc_t)(old, n);
    /* glibc: realloc(p, 0) frees p and returns NULL; a NULL for n > 0 leaves p alone */
    int failed = p == NULL && n != 0;
    settle_old(old, had, &b, failed);
    if (p) lt_record_alloc(p, n, LT_REALLOC, CALLER);
    t_in_hook = 0;
    return p;
}

HOOK static void *h_reallocarray(void *old, size_t nmemb, size_t size)
{
    if (!ACTIVE()) return REAL(LT_REALLOCARRAY, reallocarray_t)(old, nmemb, size);
    t_in_hook = 1;
    struct lt_block b;
    int had = take_old(old, &b, LT_REALLOCARRAY, CALLER);
    void *p = REAL(LT_REALLOCARRAY, reallocarray_t)(old, nmemb, size);
    int failed = p == NULL && (uint64_t)nmemb * size != 0;
    settle_old(old, had, &b, failed);
    if (p) lt_record_alloc(p, (uint64_t)nmemb * size, LT_REALLOCARRAY, CALLER);
    t_in_hook = 0;
    return p;
}

#define FREE_HOOK(name, fn)                                                      \
    HOOK static void name(void *p)                                               \
    {                                                                            \
        if (!p || !ACTIVE() || NOT_SAMPLED_FREE(p)) { REAL(fn, free_t)(p); return; } \
        t_in_hook = 1;                                                           \
        if (LT_CHECKING()) check_free(p, fn, CALLER);                            \
        else lt_record_free(p);                                                  \
        REAL(fn, free_t)(p);                                                     \
        t_in_hook = 0;                                                           \
    }
FREE_HOOK(h_free, LT_FREE)
FREE_HOOK(h_cfree, LT_CFREE)

HOOK static int h_posix_memalign(void **out, size_t align, size_t size)
{
    if (!ACTIVE()) return REAL(LT_POSIX_MEMALIGN, posix_memalign_t)(out, align, size);
    t_in_hook = 1;
    int r = REAL(LT_POSIX_MEMALIGN, posix_memalign_t)(out, align, size);
    if (r == 0 && *out) lt_record_alloc(*out, size, LT_POSIX_MEMALIGN, CALLER);
    t_in_hook = 0;
    return r;
}

#define MEMALIGN_HOOK(name, fn)                                                  \
    HOOK static void *name(size_t align, size_t size)                            \
    {                                                                            \
        if (!ACTIVE()) return REAL(fn, memalign_t)(align, size);                 \
        t_in_hook = 1;                                                           \
        void *p = REAL(fn, memalign_t)(align, size);                             \
        if (p) lt_record_alloc(p, size, fn, CALLER);                             \
        t_in_hook = 0;                                                           \
        return p;                                                                \
    }
MEMALIGN_HOOK(h_aligned_alloc, LT_ALIGNED_ALLOC)
MEMALIGN_HOOK(h_memalign, LT_MEMALIGN)

/* ---------- dlopen / dlclose ----------
 * glibc's dlopen takes its caller from its own return address: the caller's RPATH/RUNPATH and
 * namespace decide where a bare library name is searched (heaptrack's injected hook broke Julia's
 * RUNPATH this way). So the hook never calls dlopen from the agent with a bare name: it jumps to
 * the real dlopen with a return address inside the caller's own module, at a `ret` byte found in
 * that module's code, which returns to a continuation in the agent, which patches the new
 * modules and returns to the caller. dlopen sees the right caller, and the new library's slots
 * are patched before the caller's next instruction. A path with a slash is not searched: the hook
 * calls dlopen itself. Where no such byte is usable (execute-only code, a user-space shadow stack),
 * the hook jumps to dlopen with the caller's return address untouched and the agent thread
 * patches the new modules as soon as the loader lock is free (waking it is all the hook does). */

void lt_notify_dlopen(void);   /* agent.c */

static int s_shadow_stack = -1;   /* x86 user shadow stack (CET): a gadget return would fault */

struct gadget { uintptr_t lo, addr; };
static struct gadget s_gadgets[32];
static lt_lock s_gadget_lock;

static uintptr_t return_gadget(uintptr_t caller)
{
    if (s_shadow_stack != 0) return 0;   /* unknown or on: no gadget */
    uintptr_t lo, hi;
    if (!lt_code_range(caller, &lo, &hi)) return 0;
    uintptr_t found = 0;
    lt_lock_take(&s_gadget_lock);
    for (unsigned i = 0; i < sizeof s_gadgets / sizeof *s_gadgets; i++)
        if (s_gadgets[i].lo == lo) { found = s_gadgets[i].addr; break; }
    if (!found) {
        const uint8_t *c = memchr((const void *)lo, 0xC3, hi - lo);   /* ret */
        if (c) {
            found = (uintptr_t)c;
            static unsigned next;
            s_gadgets[next++ % (sizeof s_gadgets / sizeof *s_gadgets)] = (struct gadget){ lo, found };
        }
    }
    lt_lock_release(&s_gadget_lock);
    return found;
}

/* Called once per session (not from a hook): does this process run with a user shadow stack? */
void lt_detect_shadow_stack(void)
{
    s_shadow_stack = 0;
    long fd = lt_syscall3(SYS_open, "/proc/self/status", 0 /* O_RDONLY */, 0);
    if (fd < 0) { s_shadow_stack = 1; return; }
    static char buf[8192];
    long n = lt_syscall3(SYS_read, fd, buf, sizeof buf - 1);
    lt_syscall3(SYS_close, fd, 0, 0);
    if (n <= 0) { s_shadow_stack = 1; return; }
    buf[n] = 0;
    const char *f = strstr(buf, "x86_Thread_features:");
    if (f) {
        const char *end = strchr(f, '\n');
        const char *shstk = strstr(f, "shstk");
        if (shstk && (!end || shstk < end)) s_shadow_stack = 1;
    }
}

/* 1: call dlopen here (a path); 0: plain jump (no gadget); else the gadget to return through. */
LT_HIDDEN uintptr_t lt_dlopen_prepare(const char *file, int mode, uintptr_t caller);
uintptr_t lt_dlopen_prepare(const char *file, int mode, uintptr_t caller)
{
    (void)mode;
    if (!atomic_load_explicit(&lt_enabled, memory_order_relaxed)) return 0;
    if (!file || (strchr(file, '/') && !strchr(file, '$'))) return 1;
    uintptr_t g = return_gadget(caller);
    if (g > 1) return g;
    lt_notify_dlopen();
    return 0;
}

LT_HIDDEN void *lt_dlopen_sync(const char *file, int mode);
void *lt_dlopen_sync(const char *file, int mode)
{
    void *h = REAL(LT_DLOPEN, dlopen_t)(file, mode);
    if (h && file && atomic_load_explicit(&lt_enabled, memory_order_relaxed)) {
        int saved = errno;
        lt_after_dlopen();
        errno = saved;
    }
    return h;
}

/* the gadget's continuation: dlopen returned `handle` */
LT_HIDDEN void lt_dlopen_done(void *handle);
void lt_dlopen_done(void *handle)
{
    if (handle && atomic_load_explicit(&lt_enabled, memory_order_relaxed)) {
        int saved = errno;
        lt_after_dlopen();
        errno = saved;
    }
}

void lt_hook_dlopen(void);
__asm__(
    ".text\n"
    ".globl lt_hook_dlopen\n"
    ".hidden lt_hook_dlopen\n"
    ".type lt_hook_dlopen, @function\n"
    "lt_hook_dlopen:\n"
    "  .cfi_startproc\n"
    "  endbr64\n"
    "  push %rdi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  push %rsi\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  sub $8, %rsp\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  mov 24(%rsp), %rdx\n"          /* the caller's return address */
    "  call lt_dlopen_prepare\n"
    "  add $8, %rsp\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rsi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  pop %rdi\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  cmp $1, %rax\n"
    "  je lt_dlopen_sync\n"
    "  test %rax, %rax\n"
    "  jz 1f\n"
    "  lea lt_dlopen_continue(%rip), %r11\n"
    "  push %r11\n"                    /* where the gadget's ret goes */
    "  push %rax\n"                    /* dlopen's return address: the ret byte in the caller's module */
    "1:\n"
    "  jmp *lt_real+88(%rip)\n"        /* lt_real[LT_DLOPEN]: keep in step with enum lt_fn */
    "  .cfi_endproc\n"
    ".size lt_hook_dlopen, .-lt_hook_dlopen\n"
    ".type lt_dlopen_continue, @function\n"
    "lt_dlopen_continue:\n"             /* entered by the gadget's ret: rsp points at the caller's return address */
    "  .cfi_startproc\n"
    "  push %rax\n"
    "  .cfi_adjust_cfa_offset 8\n"
    "  mov %rax, %rdi\n"
    "  call lt_dlopen_done\n"
    "  pop %rax\n"
    "  .cfi_adjust_cfa_offset -8\n"
    "  ret\n"
    "  .cfi_endproc\n"
    ".size lt_dlopen_continue, .-lt_dlopen_continue\n");
_Static_assert(LT_DLOPEN == 11, "lt_hook_dlopen jumps through lt_real[11]");

HOOK static int h_dlclose(void *handle)
{
    int r = REAL(LT_DLCLOSE, dlclose_t)(handle);
    if (atomic_load_explicit(&lt_enabled, memory_order_relaxed)) {
        int saved = errno;
        lt_after_dlclose();
        errno = saved;
    }
    return r;
}

void *const lt_hooks[LT_FN_COUNT] = {
    [LT_MALLOC] = (void *)h_malloc,
    [LT_CALLOC] = (void *)h_calloc,
    [LT_REALLOC] = (void *)h_realloc,
    [LT_REALLOCARRAY] = (void *)h_reallocarray,
    [LT_FREE] = (void *)h_free,
    [LT_CFREE] = (void *)h_cfree,
    [LT_POSIX_MEMALIGN] = (void *)h_posix_memalign,
    [LT_ALIGNED_ALLOC] = (void *)h_aligned_alloc,
    [LT_MEMALIGN] = (void *)h_memalign,
    [LT_VALLOC] = (void *)h_valloc,
    [LT_PVALLOC] = (void *)h_pvalloc,
    [LT_DLOPEN] = (void *)lt_hook_dlopen,
    [LT_DLMOPEN] = NULL,   /* a new namespace brings its own libc: its slots are foreign anyway */
    [LT_DLCLOSE] = (void *)h_dlclose,
};
