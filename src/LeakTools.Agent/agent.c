/* Agent lifecycle: start (LD_PRELOAD constructor, or leaktools_agent_start called by the injector
 * on a thread stopped at the entry of malloc/free), the agent thread (expiry scan, reports, module
 * watch, controller watch), detach and self-unhook, fork and exit.
 *
 * Unhook order, whoever asks (DETACH, the controller's end of the socket closing, a send failing):
 * hooks off (lt_enabled = 0: a thread inside a hook finishes its record and the next call passes
 * through), every relocation slot back to its original (that undoes the dlopen hook too), the live
 * table freed under its locks, the agent thread ends. The library is never dlclosed: a thread may
 * still be inside a hook; a later attach reuses it.
 *
 * The socket is written by the agent thread and, for a bad free (checked frees), by the freeing
 * thread: whole records under s_send_lock, which also guards closing it. */
#define _GNU_SOURCE
#include "agent.h"
#include "protocol.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Bind the oldest versions, so one build loads on glibc 2.17 (RHEL 7), where these live in
 * libpthread (a DT_NEEDED of ours), as on current glibc, which keeps them as compat symbols. */
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_sigmask,pthread_sigmask@GLIBC_2.2.5");
__asm__(".symver pthread_attr_setstacksize,pthread_attr_setstacksize@GLIBC_2.2.5");

enum { ST_IDLE = 0, ST_STARTING, ST_ACTIVE, ST_CHILD };

static _Atomic int s_state;
static int s_sock = -1, s_wake = -1;
static uint32_t s_sessions;
static int s_launch;
static _Atomic int s_dlopen_pending, s_exit_requested, s_exit_done;
static lt_lock s_send_lock;
/* checked frees: a freeing thread asks for SYNC (s_sync_request) and waits for the controller's
 * SYNC_ACK (s_sync_done); s_serving while the agent thread runs its session */
static _Atomic int s_sync_request, s_sync_done, s_serving;
static int s_sync_sent;
static lt_lock s_problem_lock;
static char s_token[LT_TOKEN_LENGTH];
static pthread_t s_thread;

LT_EXPORT const uint32_t leaktools_agent_abi = LT_PROTOCOL_VERSION;

/* ---------- raw socket helpers (no errno, no SIGPIPE) ---------- */

static void raw_close(int fd) { if (fd >= 0) lt_syscall3(SYS_close, fd, 0, 0); }

/* The wake-up eventfd is written from any thread (a dlopen, a bad free, exit) while the session may
 * be ending on the agent thread. A writer announces itself before it reads the descriptor and the
 * closer waits for writers to leave, so a write never lands on a descriptor number the program has
 * opened again in the meantime. */
static _Atomic int s_wake_users;

static void wake_agent(void)
{
    atomic_fetch_add(&s_wake_users, 1);
    int fd = __atomic_load_n(&s_wake, __ATOMIC_SEQ_CST);
    if (fd >= 0) {
        uint64_t one = 1;
        lt_syscall3(SYS_write, fd, &one, 8);
    }
    atomic_fetch_sub(&s_wake_users, 1);
}

static void close_wake(void)
{
    int fd = __atomic_exchange_n(&s_wake, -1, __ATOMIC_SEQ_CST);
    while (atomic_load(&s_wake_users) > 0) lt_syscall3(SYS_sched_yield, 0, 0, 0);
    raw_close(fd);
}

static int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        long n = lt_syscall6(SYS_sendto, fd, (long)p, (long)len, MSG_NOSIGNAL, 0, 0);
        if (n == -EINTR) continue;
        if (n <= 0) return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

static int poll_in(int fd, int timeout_ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    long r;
    do r = lt_syscall3(SYS_poll, &p, 1, timeout_ms); while (r == -EINTR);
    return r > 0 && (p.revents & POLLIN);
}

static int recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    while (len > 0) {
        if (timeout_ms >= 0 && !poll_in(fd, timeout_ms)) return 0;
        long n = lt_syscall6(SYS_recvfrom, fd, (long)p, (long)len, 0, 0, 0);
        if (n == -EINTR) continue;
        if (n <= 0) return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

static int send_record(int fd, uint16_t type, const void *payload, uint32_t len)
{
    struct lt_rec_header h = { type, 0, len };
    return send_all(fd, &h, sizeof h) && (len == 0 || send_all(fd, payload, len));
}

/* ---------- the output buffer of the agent thread ---------- */

#define OUT_SIZE (256 * 1024)
static uint8_t s_out[OUT_SIZE];
static size_t s_out_len, s_rec_start;
static int s_rec_type, s_out_failed;

static void out_close_record(void)
{
    if (!s_rec_type) return;
    struct lt_rec_header *h = (struct lt_rec_header *)(s_out + s_rec_start);
    h->length = (uint32_t)(s_out_len - s_rec_start - sizeof *h);
    s_rec_type = 0;
}

static void out_flush(void)
{
    out_close_record();
    if (s_out_len && !s_out_failed) {
        lt_lock_take(&s_send_lock);
        if (!send_all(s_sock, s_out, s_out_len)) s_out_failed = 1;
        lt_lock_release(&s_send_lock);
    }
    s_out_len = 0;
}

static void out_begin(int type, size_t need)
{
    if (s_rec_type == type && s_out_len + need <= OUT_SIZE) return;
    out_close_record();
    if (s_out_len + sizeof(struct lt_rec_header) + need > OUT_SIZE) out_flush();
    s_rec_start = s_out_len;
    struct lt_rec_header h = { (uint16_t)type, 0, 0 };
    memcpy(s_out + s_out_len, &h, sizeof h);
    s_out_len += sizeof h;
    s_rec_type = type;
}

static void out_add(int type, const void *data, size_t len)
{
    out_begin(type, len);
    memcpy(s_out + s_out_len, data, len);
    s_out_len += len;
}

/* A record that stands alone (one STACK each). */
static void out_single(int type, const void *a, size_t alen, const void *b, size_t blen)
{
    out_close_record();
    if (s_out_len + sizeof(struct lt_rec_header) + alen + blen > OUT_SIZE) out_flush();
    struct lt_rec_header h = { (uint16_t)type, 0, (uint32_t)(alen + blen) };
    memcpy(s_out + s_out_len, &h, sizeof h);
    s_out_len += sizeof h;
    memcpy(s_out + s_out_len, a, alen);
    s_out_len += alen;
    if (blen) { memcpy(s_out + s_out_len, b, blen); s_out_len += blen; }
}

/* ---------- reporting ---------- */

static uint32_t s_stacks_sent;
static struct lt_rec_counter *s_sent;     /* last counters sent, by stack id */
static size_t s_sent_capacity;

static void send_new_stacks(void)
{
    uint32_t n = lt_stack_count();
    for (uint32_t id = s_stacks_sent + 1; id <= n; id++) {
        const struct lt_stack *s = lt_stack_get(id);
        if (!s) break;
        struct { uint32_t id, depth; } h = { id, s->depth };
        out_single(LT_REC_STACK, &h, sizeof h, s->frames, s->depth * sizeof(uint64_t));
        s_stacks_sent = id;
    }
}

static int expire_cb(const struct lt_block *b, void *ctx)
{
    (void)ctx;
    if (!b) { send_new_stacks(); out_flush(); return 1; }
    struct lt_cold_counters *c = lt_cold(b->stack);
    atomic_fetch_add_explicit(&c->expired_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->expired_bytes, b->size, memory_order_relaxed);
    if (b->flags & LT_BLOCK_SAMPLED) {
        uint64_t w = lt_sample_weight_x1024(b->size);
        atomic_fetch_add_explicit(&c->est_expired_count, w, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->est_expired_bytes, w * b->size / 1024, memory_order_relaxed);
    }
    struct lt_rec_expired e = { b->stack, b->flags & LT_BLOCK_SAMPLED, b->size, b->time, b->ptr };
    if (s_rec_type == LT_REC_EXPIRED && s_out_len + sizeof e > OUT_SIZE) return 0;
    if (s_rec_type != LT_REC_EXPIRED && s_out_len + sizeof(struct lt_rec_header) + sizeof e > OUT_SIZE) return 0;
    out_add(LT_REC_EXPIRED, &e, sizeof e);
    return 1;
}

static int ensure_sent_capacity(uint32_t n)
{
    void *array = s_sent;
    int ok = lt_grow(&array, &s_sent_capacity, s_sent_capacity, (size_t)n + 1, sizeof *s_sent, 4096);
    s_sent = array;
    return ok;
}

static void send_counters(int all)
{
    uint32_t n = lt_stack_count();
    if (!ensure_sent_capacity(n)) return;
    for (uint32_t id = 0; id <= n; id++) {
        struct lt_rec_counter r;
        lt_counters_read(id, &r);
        if (!all && memcmp(&r, &s_sent[id], sizeof r) == 0) continue;
        if (r.alloc_count == 0 && r.free_count == 0 && s_sent[id].alloc_count == 0) continue;
        s_sent[id] = r;
        out_add(LT_REC_COUNTERS, &r, sizeof r);
    }
}

static void send_stats(void)
{
    struct lt_rec_stats st = { 0 };
    st.monotonic_ns = lt_now();
    uint32_t n = lt_stack_count();
    for (uint32_t id = 0; id <= n; id++) {
        struct lt_rec_counter r;
        lt_counters_read(id, &r);
        st.allocations += r.alloc_count;
        st.frees += r.free_count;
    }
    st.unknown_frees = lt_totals.unknown_frees;
    st.failed_allocations = lt_totals.failed_allocations;
    lt_live_stats(&st.live_blocks, &st.live_bytes);
    st.stacks = n;
    st.forks = lt_totals.forks;
    st.stack_overflow = lt_totals.stack_overflow;
    st.hooked_slots = lt_hooked_slots();
    out_add(LT_REC_STATS, &st, sizeof st);
}

static void report(int all_counters)
{
    send_new_stacks();
    uint64_t now = lt_now_coarse();
    if (now > lt_cfg.expire_ns) lt_live_expire(now - lt_cfg.expire_ns, expire_cb, NULL);
    send_new_stacks();
    send_counters(all_counters);
    send_stats();
    out_flush();
}

/* ---------- bad frees (checked frees) ---------- */

static int send_stack_record(uint32_t id)
{
    const struct lt_stack *st = lt_stack_get(id);
    if (!st) return 1;
    struct { struct lt_rec_header h; uint32_t id, depth; } r = { { LT_REC_STACK, 0, (uint32_t)(8 + st->depth * sizeof(uint64_t)) }, id, st->depth };
    return send_all(s_sock, &r, sizeof r) && send_all(s_sock, st->frames, st->depth * sizeof(uint64_t));
}

/* On the freeing thread, before the real call (which may abort the process): the problem and its
 * stacks go out at once; then the agent thread sends a full report and SYNC, and this thread
 * waits (at most 10 s) for the controller's SYNC_ACK, so it can symbolize while the process lives. */
void lt_report_problem(const struct lt_rec_problem *p)
{
    if (!atomic_load(&s_serving)) return;
    lt_lock_take(&s_problem_lock);
    lt_lock_take(&s_send_lock);
    if (s_sock >= 0 && !s_out_failed) {
        struct lt_rec_header h = { LT_REC_PROBLEM, 0, sizeof *p };
        if (!(send_stack_record(p->stack) && send_stack_record(p->alloc_stack) && send_stack_record(p->first_free_stack) &&
              send_all(s_sock, &h, sizeof h) && send_all(s_sock, p, sizeof *p)))
            s_out_failed = 1;
    }
    int seq = atomic_fetch_add(&s_sync_request, 1) + 1;
    wake_agent();
    lt_lock_release(&s_send_lock);
    uint64_t deadline = lt_now() + 10000000000ull;
    for (;;) {
        int done = atomic_load(&s_sync_done);
        if (done - seq >= 0 || !atomic_load(&s_serving)) break;
        uint64_t now = lt_now();
        if (now >= deadline) break;
        lt_futex_wait(&s_sync_done, done, (long)(deadline - now < 100000000ull ? deadline - now : 100000000ull));
    }
    lt_lock_release(&s_problem_lock);
}

static void sync_done(int seq)
{
    atomic_store(&s_sync_done, seq);
    lt_futex_wake(&s_sync_done, 1 << 30);
}

/* ---------- the heap from before the hooks (checked frees) ----------
 * ld.so runs the constructors of the libraries a program needs before ours, and what they
 * allocated there was never seen: its later free is no bad free. With glibc the main heap (the
 * brk area: all of the heap before main, unless a constructor started a thread or allocated past
 * the mmap threshold) is read once, chunk by chunk, and each block in use (or held in a tcache or
 * fast bin, which look the same) is adopted as live: not counted, never expiring. Where the heap
 * cannot be read (another allocator, an unexpected layout), frees of unknown pointers inside the
 * brk area as it was at the start are not reported. */

static uintptr_t s_early_lo, s_early_hi;

int lt_early_heap(uintptr_t p) { return p >= s_early_lo && p < s_early_hi; }

static uintptr_t read_start_brk(void)   /* /proc/self/stat field 47 (Linux 3.5 and later) */
{
    static char buf[4096];
    long fd = lt_syscall3(SYS_open, "/proc/self/stat", 0 /* O_RDONLY */, 0);
    if (fd < 0) return 0;
    long n = lt_syscall3(SYS_read, fd, buf, sizeof buf - 1);
    raw_close((int)fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char *c = strrchr(buf, ')');   /* the name may hold spaces and parentheses */
    if (!c) return 0;
    int field = 2;
    for (c++; *c && field < 47; c++)
        if (*c == ' ') field++;
    uintptr_t v = 0;
    for (; *c >= '0' && *c <= '9'; c++) v = v * 10 + (uintptr_t)(*c - '0');
    return field == 47 ? v : 0;
}

/* glibc's main heap: chunks back to back from the start of the brk area to the top chunk, which
 * ends at the break; a chunk is in use when the next one has PREV_INUSE. 0 if it does not add up. */
static int adopt_glibc_heap(uintptr_t lo, uintptr_t hi)
{
    uintptr_t c = (lo + 15) & ~(uintptr_t)15;
    while (c < hi) {
        if (hi - c < 32) return 0;
        uint64_t size = *(const uint64_t *)(c + 8) & ~(uint64_t)7;
        if (size < 32 || (size & 15) || size > hi - c) return 0;
        if (c + size == hi) return 1;   /* the top chunk */
        if (hi - (c + size) < 16) return 0;
        if (*(const uint64_t *)(c + size + 8) & 1) lt_live_adopt(c + 16, size - 8);
        c += size;
    }
    return 0;
}

static void adopt_early_heap(void)
{
    s_early_lo = s_early_hi = 0;
    uintptr_t lo = read_start_brk(), hi = (uintptr_t)lt_syscall3(SYS_brk, 0, 0, 0);
    if (lo == 0 || hi <= lo) return;   /* no brk heap yet */
    if (lt_allocator_is_glibc() && adopt_glibc_heap(lo, hi)) return;
    s_early_lo = lo;
    s_early_hi = hi;
}

/* ---------- unhook ---------- */

static void unhook(void)
{
    atomic_store(&lt_enabled, 0);
    lt_restore_all();
    lt_live_clear();
}

/* ---------- module changes ---------- */

void lt_notify_dlopen(void)
{
    atomic_store(&s_dlopen_pending, 1);
    wake_agent();
}

/* Waits for the loader lock: dladdr takes it, so it returns once no dlopen is in progress. */
static void sync_loader(void)
{
    if (lt_dladdr) {
        Dl_info info;
        ((int (*)(const void *, Dl_info *))lt_dladdr)((const void *)&sync_loader, &info);
    }
}

static void rescan_modules(void)
{
    sync_loader();
    lt_unwind_refresh_modules();
    lt_patch_all();
}

void lt_after_dlopen(void)
{
    lt_unwind_refresh_modules();
    lt_patch_all();
}

void lt_after_dlclose(void)
{
    lt_after_dlclose_prune();
    lt_unwind_refresh_modules();
}

/* ---------- the agent thread ---------- */

static void handle_dlopen_pending(void)
{
    if (!atomic_exchange(&s_dlopen_pending, 0)) return;
    /* the hooked thread jumped into dlopen: wait until it holds the loader lock and is done */
    for (int i = 0; i < 200; i++) {
        sync_loader();
        if (lt_modules_changed()) { rescan_modules(); return; }
        struct timespec ts = { 0, 1000000 };
        lt_syscall3(SYS_nanosleep, &ts, 0, 0);
    }
}

/* Controller commands, as they arrive (a partial record waits in the buffer for its rest). */
struct commands {
    uint8_t buf[256];
    size_t len;
    int detach, flush, gone;
};

static void read_commands(struct commands *c)
{
    long n = lt_syscall6(SYS_recvfrom, s_sock, (long)(c->buf + c->len), (long)(sizeof c->buf - c->len), MSG_DONTWAIT, 0, 0);
    if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR)) c->gone = 1;   /* the controller went away */
    if (n > 0) c->len += (size_t)n;
    while (c->len >= sizeof(struct lt_rec_header)) {
        struct lt_rec_header h;
        memcpy(&h, c->buf, sizeof h);
        size_t total = sizeof h + h.length;
        if (total > sizeof c->buf) { c->gone = 1; break; }
        if (c->len < total) break;
        if (h.type == LT_REC_DETACH) c->detach = 1;
        else if (h.type == LT_REC_FLUSH) c->flush = 1;
        else if (h.type == LT_REC_SYNC_ACK && h.length >= 4) {
            int seq;
            memcpy(&seq, c->buf + sizeof h, 4);
            sync_done(seq);
        }
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

static void send_sync(int seq)
{
    struct lt_rec_sync sy = { (uint32_t)seq, 0 };
    out_single(LT_REC_SYNC, &sy, sizeof sy, NULL, 0);
    out_flush();
    s_sync_sent = seq;
}

/* Sends SYNC and reads commands until the controller answers it (at most timeout_ns). */
static void sync_with_controller(struct commands *c, uint64_t timeout_ns)
{
    int seq = atomic_fetch_add(&s_sync_request, 1) + 1;
    send_sync(seq);
    uint64_t deadline = lt_now() + timeout_ns;
    while (!s_out_failed && !c->gone && atomic_load(&s_sync_done) - seq < 0) {
        uint64_t now = lt_now();
        if (now >= deadline) break;
        if (poll_in(s_sock, (int)((deadline - now) / 1000000) + 1)) read_commands(c);
    }
}

static void *agent_main(void *arg)
{
    (void)arg;
    t_in_hook = 1;   /* nothing this thread does is the program's allocation */
    lt_syscall6(SYS_prctl, PR_SET_NAME, (long)"leaktools-agent", 0, 0, 0, 0);
    uint64_t tick = lt_cfg.tick_ns;
    uint64_t next_tick = lt_now() + tick, next_maintenance = lt_now() + 1000000000ull;
    int exiting = 0;
    struct commands c = { .len = 0 };
    s_sync_sent = atomic_load(&s_sync_request);
    while (!c.detach && !c.gone && !exiting) {
        uint64_t now = lt_now();
        int timeout = next_tick > now ? (int)((next_tick - now) / 1000000) + 1 : 0;
        struct pollfd p[2] = { { s_sock, POLLIN, 0 }, { s_wake, POLLIN, 0 } };
        long r = lt_syscall3(SYS_poll, p, 2, timeout);
        c.flush = 0;
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) read_commands(&c);
        if (r > 0 && (p[1].revents & POLLIN)) {
            uint64_t v;
            lt_syscall3(SYS_read, s_wake, &v, 8);
        }
        if (c.gone) break;
        handle_dlopen_pending();
        if (atomic_load(&s_exit_requested)) { exiting = 1; break; }
        now = lt_now();
        if (now >= next_maintenance) {
            if (lt_modules_changed()) rescan_modules();
            else lt_patch_all();   /* modules caught mid-load last time, slots lazy binding rewrote */
            lt_verify_slots();
            next_maintenance = now + 1000000000ull;
        }
        int want = atomic_load(&s_sync_request);
        if (want != s_sync_sent) {
            /* a thread is held before a bad free (its PROBLEM is out): everything now, then SYNC */
            report(1);
            send_sync(want);
            next_tick = now + tick;
        }
        if (now >= next_tick || c.flush || c.detach) {
            report(c.flush || c.detach);
            next_tick = now + tick;
        }
        if (s_out_failed) c.gone = 1;
    }
    if (exiting) {
        /* the process is exiting: the live blocks now are the unfreed ones; the controller
         * symbolizes them (SYNC) while the process still exists */
        atomic_store(&lt_enabled, 0);
        struct lt_rec_bye bye = { LT_BYE_EXIT };
        out_single(LT_REC_EXIT, NULL, 0, NULL, 0);
        report(1);
        sync_with_controller(&c, 10000000000ull);
        out_single(LT_REC_BYE, &bye, sizeof bye, NULL, 0);
        out_flush();
        atomic_store(&s_serving, 0);
        sync_done(atomic_load(&s_sync_request));
        atomic_store(&s_exit_done, 1);
        lt_futex_wake(&s_exit_done, 1);
        return NULL;   /* leave the slots: exit handlers still run; the hooks pass through */
    }
    unhook();
    atomic_store(&s_serving, 0);
    sync_done(atomic_load(&s_sync_request));   /* a thread held before a bad free goes on */
    if (c.detach && !s_out_failed) {
        struct lt_rec_bye bye = { LT_BYE_DETACHED };
        out_single(LT_REC_BYE, &bye, sizeof bye, NULL, 0);
        out_flush();
    }
    lt_lock_take(&s_send_lock);   /* a freeing thread may be writing a PROBLEM */
    raw_close(s_sock);
    s_sock = -1;
    close_wake();
    lt_lock_release(&s_send_lock);
    s_out_len = 0;
    s_rec_type = 0;
    s_out_failed = 0;
    atomic_store(&s_state, ST_IDLE);
    /* an exit() that began while this session was ending saw it active and waits for it: let it go */
    atomic_store(&s_exit_done, 1);
    lt_futex_wake(&s_exit_done, 1 << 30);
    return NULL;
}

/* ---------- fork: children are not traced ---------- */

static void fork_prepare(void) { t_in_hook++; }
static void fork_parent(void)
{
    t_in_hook--;
    if (atomic_load(&s_state) == ST_ACTIVE) atomic_fetch_add_explicit(&lt_totals.forks, 1, memory_order_relaxed);
}
static void fork_child(void)
{
    if (atomic_load(&s_state) != ST_IDLE) {
        atomic_store(&lt_enabled, 0);
        lt_live_reset_locks();
        lt_stacks_reset_lock();
        atomic_store(&s_send_lock.v, 0);
        atomic_store(&s_problem_lock.v, 0);
        atomic_store(&s_serving, 0);
        lt_patch_reset_lock();
        lt_restore_in_child();
        lt_live_clear();
        raw_close(s_sock);
        raw_close(s_wake);
        s_sock = s_wake = -1;
        atomic_store(&s_wake_users, 0);   /* a thread of the parent's may have been waking it */
        atomic_store(&s_state, ST_CHILD);
    }
    t_in_hook--;
}

/* ---------- start ---------- */

static int connect_to(const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof a.sun_path) return -1;
    memcpy(a.sun_path, path, len);
    int fd = (int)lt_syscall3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    long r;
    do r = lt_syscall3(SYS_connect, fd, &a, sizeof a); while (r == -EINTR);
    if (r != 0) { raw_close(fd); return -1; }
    return fd;
}

static void fail(int fd, uint32_t code, const char *msg)
{
    struct { uint32_t code; char text[200]; } f;
    f.code = code;
    size_t n = strlen(msg);
    if (n > sizeof f.text) n = sizeof f.text;
    memcpy(f.text, msg, n);
    send_record(fd, LT_REC_FAILED, &f, (uint32_t)(4 + n));
}

/* `args`: "<socket path>\n<token>". Returns 0 once the hooks are in and the agent thread runs. */
static int start(const char *args, int launch)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *nl = strchr(args, '\n');
    if (!nl || (size_t)(nl - args) >= sizeof path) return -2;
    memcpy(path, args, (size_t)(nl - args));
    path[nl - args] = 0;
    memset(s_token, 0, sizeof s_token);
    size_t tl = strlen(nl + 1);
    memcpy(s_token, nl + 1, tl < sizeof s_token ? tl : sizeof s_token);

    int expected = ST_IDLE;
    if (!atomic_compare_exchange_strong(&s_state, &expected, ST_STARTING)) return expected == ST_ACTIVE ? -3 : -4;
    s_launch = launch;

    int fd = connect_to(path);
    if (fd < 0) { atomic_store(&s_state, ST_IDLE); return -5; }

    struct lt_rec_hello hello = { LT_PROTOCOL_VERSION, (uint32_t)lt_getpid(), lt_now(), launch ? LT_HELLO_LAUNCH : 0, s_sessions, { 0 } };
    memcpy(hello.token, s_token, LT_TOKEN_LENGTH);
    struct lt_rec_header h;
    struct lt_rec_config cfg;
    if (!send_record(fd, LT_REC_HELLO, &hello, sizeof hello) ||
        !recv_exact(fd, &h, sizeof h, 15000) || h.type != LT_REC_CONFIG || h.length != sizeof cfg ||
        !recv_exact(fd, &cfg, sizeof cfg, 15000)) {
        raw_close(fd);
        atomic_store(&s_state, ST_IDLE);
        return -6;
    }

    static int once;
    if (!once) {
        if (!lt_stacks_init() || !lt_live_init() || !lt_unwind_init()) {
            fail(fd, LT_FAIL_NO_MEMORY, "the agent could not map its tables");
            raw_close(fd);
            atomic_store(&s_state, ST_IDLE);
            return -7;
        }
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        once = 1;
    } else {
        lt_unwind_refresh_modules();
    }
    if (!lt_resolve_real()) {
        fail(fd, LT_FAIL_NO_ALLOCATOR, "no malloc/free definitions found in the loaded modules");
        raw_close(fd);
        atomic_store(&s_state, ST_IDLE);
        return -8;
    }

    lt_cfg.expire_ns = cfg.expire_ns ? cfg.expire_ns : 10000000000ull;
    lt_cfg.sample_interval = cfg.sample_interval;
    lt_cfg.tick_ns = cfg.tick_ns < 5000000ull ? 5000000ull : cfg.tick_ns > 5000000000ull ? 5000000000ull : cfg.tick_ns;
    lt_cfg.depth = cfg.depth < 2 ? 2 : cfg.depth > LT_MAX_DEPTH ? LT_MAX_DEPTH : cfg.depth;
    /* checked frees only when every allocation is seen: from the start, without sampling */
    int check = (cfg.flags & LT_CONFIG_CHECK_FREES) && launch && !cfg.sample_interval && lt_freed_init();
    lt_cfg.flags = check ? LT_CONFIG_CHECK_FREES : 0;
    lt_stacks_reset_counters();
    lt_totals.unknown_frees = lt_totals.failed_allocations = lt_totals.forks = lt_totals.stack_overflow = 0;
    s_stacks_sent = 0;
    if (s_sent) memset(s_sent, 0, s_sent_capacity * sizeof *s_sent);
    lt_modules_changed();
    lt_detect_shadow_stack();
    s_sock = fd;
    __atomic_store_n(&s_wake, (int)lt_syscall3(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK, 0), __ATOMIC_SEQ_CST);

    atomic_store(&lt_enabled, 1);
    if (check) adopt_early_heap();
    lt_patch_all();

    uint32_t functions = 0;
    for (int f = 0; f < LT_FN_COUNT; f++) if (lt_real[f]) functions |= 1u << f;
    struct lt_rec_ready ready = { lt_hooked_slots(), lt_foreign_slots(), 0, functions, (uint64_t)(uintptr_t)lt_real[LT_MALLOC] };
    if (!send_record(fd, LT_REC_READY, &ready, sizeof ready)) {
        unhook();
        raw_close(fd);
        s_sock = -1;
        close_wake();
        atomic_store(&s_state, ST_IDLE);
        return -9;
    }

    /* the agent thread takes no signal of the program's */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    /* before the thread exists: a session that ends at once must leave IDLE behind, not be overwritten */
    atomic_store(&s_exit_requested, 0);
    atomic_store(&s_exit_done, 0);
    atomic_store(&s_state, ST_ACTIVE);
    atomic_store(&s_serving, 1);
    int rc = pthread_create(&s_thread, &attr, agent_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&s_serving, 0);
        unhook();
        raw_close(fd);
        s_sock = -1;
        close_wake();
        atomic_store(&s_state, ST_IDLE);
        return -10;
    }
    s_sessions++;
    return 0;
}

/* Called by the injector (a remote call on a thread stopped at the entry of malloc or free). */
LT_EXPORT int leaktools_agent_start(const char *args)
{
    int saved = errno;
    t_in_hook++;
    int r = start(args, 0);
    t_in_hook--;
    errno = saved;
    return r;
}

/* ---------- LD_PRELOAD ---------- */

extern char **environ;

/* Removes LEAKTOOLS_AGENT and our entry of LD_PRELOAD from the environment, in place, so the
 * program's children (exec'd) are not traced. */
static void scrub_environment(void)
{
    if (!environ) return;
    size_t w = 0;
    for (size_t i = 0; environ[i]; i++) {
        char *e = environ[i];
        if (strncmp(e, "LEAKTOOLS_AGENT=", 16) == 0) continue;
        if (strncmp(e, "LD_PRELOAD=", 11) == 0) {
            char *src = e + 11, *dst = e + 11;
            while (*src) {
                while (*src == ':' || *src == ' ') src++;
                char *tok = src;
                while (*src && *src != ':' && *src != ' ') src++;
                size_t len = (size_t)(src - tok);
                if (len == 0) continue;
                int ours = 0;
                for (size_t k = 0; k + 18 <= len; k++)
                    if (memcmp(tok + k, "libleaktools-agent", 18) == 0) { ours = 1; break; }
                if (ours) continue;
                if (dst != e + 11) *dst++ = ':';
                memmove(dst, tok, len);
                dst += len;
            }
            *dst = 0;
            if (dst == e + 11) continue;
        }
        environ[w++] = e;
    }
    environ[w] = NULL;
}

static void say(const char *msg)
{
    lt_syscall3(SYS_write, 2, msg, strlen(msg));
}

__attribute__((constructor)) static void agent_init(void)
{
    const char *v = NULL;
    if (environ)
        for (size_t i = 0; environ[i]; i++)
            if (strncmp(environ[i], "LEAKTOOLS_AGENT=", 16) == 0) { v = environ[i] + 16; break; }
    if (!v) return;
    static char args[512];
    strncpy(args, v, sizeof args - 1);
    scrub_environment();
    t_in_hook++;
    int r = start(args, 1);
    t_in_hook--;
    if (r != 0) say("leaktools agent: could not reach the controller; the program runs untraced\n");
}

__attribute__((destructor)) static void agent_fini(void)
{
    if (atomic_load(&s_state) != ST_ACTIVE) return;
    /* exit(): let the agent thread send the blocks still live (unfreed at exit) */
    atomic_store(&s_exit_requested, 1);
    wake_agent();
    uint64_t deadline = lt_now() + 15000000000ull;   /* the agent thread waits at most 10 s for SYNC_ACK */
    while (!atomic_load(&s_exit_done) && lt_now() < deadline) lt_futex_wait(&s_exit_done, 0, 100000000);
}
