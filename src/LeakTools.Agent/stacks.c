/* Distinct call stacks, deduplicated in process: an insert-only open-addressing index of stack ids
 * (lock-free lookups, inserts under one lock: a new stack is rare), records in an mmap arena, and
 * one cache line of counters per stack. Records live as long as the process: a later session
 * reuses them (ids stay stable, the controller is sent each one it has not seen). */
#include "agent.h"
#include "protocol.h"

#include <string.h>

#define INDEX_BITS 20
#define INDEX_SIZE (1u << INDEX_BITS)
#define MAX_STACKS (INDEX_SIZE / 2)
#define ARENA_CHUNK (1u << 20)
#define CHUNK_BITS 12
#define CHUNK_IDS (1u << CHUNK_BITS)
#define CHUNKS (MAX_STACKS / CHUNK_IDS + 1)

/* counters come in chunks of 4096 stacks, mapped as ids reach them */
struct counter_chunk {
    struct lt_hot_counters hot[CHUNK_IDS * LT_STRIPES];
    struct lt_cold_counters cold[CHUNK_IDS];
};

static _Atomic uint32_t *s_index;
struct lt_stack *_Atomic *s_records;    /* not static: coreinfo.c points readers of a core at it */
static struct counter_chunk *_Atomic s_chunks[CHUNKS];
_Atomic uint32_t s_count;
static _Atomic uint32_t s_next_stripe;
static __thread uint32_t t_stripe __attribute__((tls_model("initial-exec")));
static lt_lock s_insert_lock;
static uint8_t *s_arena;
static size_t s_arena_left;

int lt_stacks_init(void)
{
    if (s_index) return 1;
    s_index = lt_mmap(INDEX_SIZE * sizeof(uint32_t));
    s_records = lt_mmap((MAX_STACKS + 1) * sizeof(void *));
    s_chunks[0] = lt_mmap(sizeof(struct counter_chunk));
    return s_index && s_records && s_chunks[0];
}

static inline uint64_t hash_frames(const uintptr_t *f, uint32_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (uint32_t i = 0; i < n; i++) {
        h ^= f[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h ? h : 1;
}

static inline int same(const struct lt_stack *s, uint64_t h, const uintptr_t *f, uint32_t n)
{
    return s->hash == h && s->depth == n && memcmp(s->frames, f, n * sizeof *f) == 0;
}

static struct lt_stack *arena_alloc(size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size > s_arena_left) {
        size_t chunk = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        uint8_t *p = lt_mmap(chunk);
        if (!p) return NULL;
        s_arena = p;
        s_arena_left = chunk;
    }
    struct lt_stack *s = (struct lt_stack *)s_arena;
    s_arena += size;
    s_arena_left -= size;
    return s;
}

uint32_t lt_stack_intern(const uintptr_t *frames, uint32_t depth)
{
    uint64_t h = hash_frames(frames, depth);
    uint32_t i = (uint32_t)h & (INDEX_SIZE - 1);
    for (;;) {
        uint32_t id = atomic_load_explicit(&s_index[i], memory_order_acquire);
        if (id == 0) break;
        struct lt_stack *s = atomic_load_explicit(&s_records[id], memory_order_acquire);
        if (same(s, h, frames, depth)) return id;
        i = (i + 1) & (INDEX_SIZE - 1);
    }
    lt_lock_take(&s_insert_lock);
    for (;;) {
        uint32_t id = atomic_load_explicit(&s_index[i], memory_order_acquire);
        if (id == 0) break;
        if (same(s_records[id], h, frames, depth)) { lt_lock_release(&s_insert_lock); return id; }
        i = (i + 1) & (INDEX_SIZE - 1);
    }
    uint32_t id = atomic_load_explicit(&s_count, memory_order_relaxed) + 1;
    if (id <= MAX_STACKS && !s_chunks[id >> CHUNK_BITS]) s_chunks[id >> CHUNK_BITS] = lt_mmap(sizeof(struct counter_chunk));
    struct lt_stack *s = id <= MAX_STACKS && s_chunks[id >> CHUNK_BITS] ? arena_alloc(sizeof *s + depth * sizeof(uintptr_t)) : NULL;
    if (!s) {
        lt_lock_release(&s_insert_lock);
        atomic_fetch_add_explicit(&lt_totals.stack_overflow, 1, memory_order_relaxed);
        return 0;
    }
    s->hash = h;
    s->id = id;
    s->depth = depth;
    memcpy(s->frames, frames, depth * sizeof *frames);
    atomic_store_explicit(&s_records[id], s, memory_order_release);
    atomic_store_explicit(&s_count, id, memory_order_release);
    atomic_store_explicit(&s_index[i], id, memory_order_release);
    lt_lock_release(&s_insert_lock);
    return id;
}

uint32_t lt_stack_count(void) { return atomic_load_explicit(&s_count, memory_order_acquire); }

const struct lt_stack *lt_stack_get(uint32_t id)
{
    if (id == 0 || id > lt_stack_count()) return NULL;
    return atomic_load_explicit(&s_records[id], memory_order_acquire);
}

/* Id 0 collects what did not fit (stack table full). */
struct lt_hot_counters *lt_hot(uint32_t id)
{
    uint32_t stripe = t_stripe;
    if (LT_UNLIKELY(stripe == 0)) t_stripe = stripe = atomic_fetch_add_explicit(&s_next_stripe, 1, memory_order_relaxed) % LT_STRIPES + 1;
    struct counter_chunk *c = atomic_load_explicit(&s_chunks[id >> CHUNK_BITS], memory_order_acquire);
    return &c->hot[(id & (CHUNK_IDS - 1)) * LT_STRIPES + stripe - 1];
}

struct lt_cold_counters *lt_cold(uint32_t id)
{
    struct counter_chunk *c = atomic_load_explicit(&s_chunks[id >> CHUNK_BITS], memory_order_acquire);
    return &c->cold[id & (CHUNK_IDS - 1)];
}

void lt_counters_read(uint32_t id, struct lt_rec_counter *r)
{
    struct counter_chunk *c = atomic_load_explicit(&s_chunks[id >> CHUNK_BITS], memory_order_acquire);
    memset(r, 0, sizeof *r);
    r->stack = id;
    if (!c) return;
    const struct lt_hot_counters *h = &c->hot[(id & (CHUNK_IDS - 1)) * LT_STRIPES];
    for (int k = 0; k < LT_STRIPES; k++) {
        r->alloc_count += h[k].alloc_count;
        r->alloc_bytes += h[k].alloc_bytes;
        r->free_count += h[k].free_count;
        r->free_bytes += h[k].free_bytes;
        r->fae_count += h[k].fae_count;
        r->fae_bytes += h[k].fae_bytes;
    }
    const struct lt_cold_counters *k = &c->cold[id & (CHUNK_IDS - 1)];
    r->expired_count = k->expired_count;
    r->expired_bytes = k->expired_bytes;
    r->est_alloc_count = k->est_alloc_count;
    r->est_alloc_bytes = k->est_alloc_bytes;
    r->est_free_count = k->est_free_count;
    r->est_free_bytes = k->est_free_bytes;
    r->est_expired_count = k->est_expired_count;
    r->est_expired_bytes = k->est_expired_bytes;
    r->est_fae_count = k->est_fae_count;
    r->est_fae_bytes = k->est_fae_bytes;
}

void lt_stacks_reset_counters(void)
{
    for (uint32_t i = 0; i < CHUNKS; i++)
        if (s_chunks[i]) memset(s_chunks[i], 0, sizeof(struct counter_chunk));
}

void lt_stacks_reset_lock(void) { atomic_store(&s_insert_lock.v, 0); }
