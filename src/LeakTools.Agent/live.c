/* The live table: every tracked block (address, size, time, stack), sharded by address hash into
 * 512 open-addressing tables with linear probing and backward-shift deletion, each under its own
 * futex lock, so threads allocating at once rarely meet. Tables grow by doubling (mmap); detach
 * frees them under their locks. The agent thread scans them for blocks older than the expiry.
 * With sampling, a counting filter lets free() skip the lock for blocks never sampled. */
#include "agent.h"

#include <string.h>

#define SHARD_BITS LT_LIVE_SHARD_BITS
#define SHARDS (1u << SHARD_BITS)
#define FILTER_BITS LT_FILTER_BITS

struct shard {
    lt_lock lock;
    uint32_t capacity;
    uint32_t count;
    uint64_t bytes;
    struct lt_block *e;
} __attribute__((aligned(64)));

static struct shard s_shards[SHARDS];
_Atomic uint8_t *lt_live_filter;
#define s_filter lt_live_filter
#define mix lt_live_mix

/* Checked frees: each shard remembers its recently freed blocks in a direct-mapped cache (slot by
 * address hash, under the shard's lock), 256 per shard, 131,072 in all (3 MiB, mapped only in
 * check mode). A freed block is forgotten when the allocator hands its address out again, when a
 * double free of it is reported, or when a later free lands in its slot: k frees later it is still
 * remembered with probability (1 - 1/131072)^k (99% after 1,300 frees, 90% after 13,800, 50%
 * after 90,000). */
#define FREED_BITS LT_FREED_BITS
#define FREED_SLOTS (1u << FREED_BITS)
struct lt_freed *lt_freed_cache;   /* also named by the core descriptor (coreinfo.c) */
#define s_freed lt_freed_cache

static inline struct lt_freed *freed_slot(uint64_t h)
{
    return &s_freed[((uint32_t)(h >> (64 - SHARD_BITS)) << FREED_BITS) | ((uint32_t)(h >> 32) & (FREED_SLOTS - 1))];
}

int lt_freed_init(void)
{
    if (!s_freed) s_freed = lt_mmap((size_t)SHARDS * FREED_SLOTS * sizeof *s_freed);
    return s_freed != NULL;
}

int lt_live_init(void)
{
    if (!s_filter) s_filter = lt_mmap(1u << FILTER_BITS);
    return s_filter != NULL;
}

static int grow(struct shard *s)
{
    uint32_t cap = s->capacity ? s->capacity * 2 : 64;
    struct lt_block *n = lt_mmap(cap * sizeof *n);
    if (!n) return 0;
    for (uint32_t i = 0; i < s->capacity; i++) {
        struct lt_block *b = &s->e[i];
        if (!b->ptr) continue;
        uint32_t j = (uint32_t)mix(b->ptr) & (cap - 1);
        while (n[j].ptr) j = (j + 1) & (cap - 1);
        n[j] = *b;
    }
    if (s->e) lt_munmap(s->e, s->capacity * sizeof *n);
    s->e = n;
    s->capacity = cap;
    return 1;
}

static inline void filter_add(uint64_t h)
{
    _Atomic uint8_t *c = &s_filter[(h >> 8) & ((1u << FILTER_BITS) - 1)];
    uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
    while (v != 255 && !atomic_compare_exchange_weak_explicit(c, &v, v + 1, memory_order_relaxed, memory_order_relaxed)) {}
}

static inline void filter_remove(uint64_t h)
{
    _Atomic uint8_t *c = &s_filter[(h >> 8) & ((1u << FILTER_BITS) - 1)];
    uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
    while (v != 255 && v != 0 && !atomic_compare_exchange_weak_explicit(c, &v, v - 1, memory_order_relaxed, memory_order_relaxed)) {}
}

void lt_live_insert(uintptr_t ptr, uint64_t size, uint32_t stack, uint32_t flags, uint64_t now)
{
    uint64_t h = mix(ptr);
    struct shard *s = &s_shards[h >> (64 - SHARD_BITS)];
    lt_lock_take(&s->lock);
    if (!atomic_load_explicit(&lt_enabled, memory_order_relaxed) ||
        ((s->count + 1) * 4 > s->capacity * 3 && !grow(s))) {
        lt_lock_release(&s->lock);
        return;
    }
    if (s_freed && freed_slot(h)->ptr == ptr) freed_slot(h)->ptr = 0;   /* handed out again */
    uint32_t mask = s->capacity - 1, i = (uint32_t)h & mask;
    while (s->e[i].ptr && s->e[i].ptr != ptr) i = (i + 1) & mask;
    if (s->e[i].ptr == ptr) {
        /* the allocator handed out an address we still hold: its free went around us (a pointer
         * freed through a path we do not hook); the old record is stale */
        s->bytes -= s->e[i].size;
        s->count--;
    }
    s->e[i] = (struct lt_block){ ptr, size, now, stack, flags };
    s->count++;
    s->bytes += size;
    if (flags & LT_BLOCK_SAMPLED) filter_add(h);
    lt_lock_release(&s->lock);
}

/* With the shard's lock held: takes ptr's block out of the table; 0 if it is not there. */
static int remove_locked(struct shard *s, uint64_t h, uintptr_t ptr, struct lt_block *out)
{
    if (s->count == 0) return 0;
    uint32_t mask = s->capacity - 1, i = (uint32_t)h & mask;
    while (s->e[i].ptr != ptr) {
        if (s->e[i].ptr == 0) return 0;
        i = (i + 1) & mask;
    }
    *out = s->e[i];
    s->count--;
    s->bytes -= out->size;
    /* backward-shift deletion keeps every probe chain unbroken */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (s->e[j].ptr == 0) break;
        uint32_t k = (uint32_t)mix(s->e[j].ptr) & mask;
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        s->e[i] = s->e[j];
        i = j;
    }
    s->e[i].ptr = 0;
    if (out->flags & LT_BLOCK_SAMPLED) filter_remove(h);
    return 1;
}

int lt_live_remove(uintptr_t ptr, struct lt_block *out)
{
    uint64_t h = mix(ptr);
    struct shard *s = &s_shards[h >> (64 - SHARD_BITS)];
    lt_lock_take(&s->lock);
    int found = remove_locked(s, h, ptr, out);
    lt_lock_release(&s->lock);
    return found;
}

int lt_live_remove_checked(uintptr_t ptr, uint32_t free_stack, struct lt_block *out, struct lt_freed *first)
{
    uint64_t h = mix(ptr);
    struct shard *s = &s_shards[h >> (64 - SHARD_BITS)];
    lt_lock_take(&s->lock);
    int r = 0;
    struct lt_freed *f = s_freed ? freed_slot(h) : NULL;
    if (remove_locked(s, h, ptr, out)) {
        r = 1;
        if (f) *f = (struct lt_freed){ ptr, out->size, out->stack, free_stack };
    } else if (f && f->ptr == ptr) {
        r = 2;
        *first = *f;
        f->ptr = 0;
    }
    lt_lock_release(&s->lock);
    return r;
}

void lt_live_adopt(uintptr_t ptr, uint64_t size)
{
    uint64_t h = mix(ptr);
    struct shard *s = &s_shards[h >> (64 - SHARD_BITS)];
    lt_lock_take(&s->lock);
    if ((s->count + 1) * 4 <= s->capacity * 3 || grow(s)) {
        uint32_t mask = s->capacity - 1, i = (uint32_t)h & mask;
        while (s->e[i].ptr && s->e[i].ptr != ptr) i = (i + 1) & mask;
        if (s->e[i].ptr == 0) {
            s->e[i] = (struct lt_block){ ptr, size, 0, 0, LT_BLOCK_ADOPTED | LT_BLOCK_EXPIRED };
            s->count++;
            s->bytes += size;
        }
    }
    lt_lock_release(&s->lock);
}

/* Marks blocks allocated at or before `older_than` as expired and hands each to fn once. */
void lt_live_expire(uint64_t older_than, lt_expire_fn fn, void *ctx)
{
    for (uint32_t k = 0; k < SHARDS; k++) {
        struct shard *s = &s_shards[k];
        if (s->count == 0) continue;
        lt_lock_take(&s->lock);
        for (uint32_t i = 0; i < s->capacity; i++) {
            struct lt_block *b = &s->e[i];
            if (!b->ptr || (b->flags & LT_BLOCK_EXPIRED) || b->time > older_than) continue;
            b->flags |= LT_BLOCK_EXPIRED;
            if (!fn(b, ctx)) {
                /* the caller's buffer is full: let it flush outside our lock, then rescan this
                 * shard (blocks already handed over carry the expired flag) */
                lt_lock_release(&s->lock);
                fn(NULL, ctx);
                k--;
                goto next;
            }
        }
        lt_lock_release(&s->lock);
    next:;
    }
}

void lt_live_clear(void)
{
    for (uint32_t k = 0; k < SHARDS; k++) {
        struct shard *s = &s_shards[k];
        lt_lock_take(&s->lock);
        if (s->e) lt_munmap(s->e, s->capacity * sizeof *s->e);
        s->e = NULL;
        s->capacity = s->count = 0;
        s->bytes = 0;
        if (s_freed) memset(&s_freed[k << FREED_BITS], 0, FREED_SLOTS * sizeof *s_freed);
        lt_lock_release(&s->lock);
    }
    if (s_filter) memset((void *)s_filter, 0, 1u << FILTER_BITS);
}

void lt_live_stats(uint64_t *blocks, uint64_t *bytes)
{
    uint64_t n = 0, b = 0;
    for (uint32_t k = 0; k < SHARDS; k++) {
        n += __atomic_load_n(&s_shards[k].count, __ATOMIC_RELAXED);
        b += __atomic_load_n(&s_shards[k].bytes, __ATOMIC_RELAXED);
    }
    *blocks = n;
    *bytes = b;
}

/* fork child: the other threads are gone, and so is any lock they held */
void lt_live_reset_locks(void)
{
    for (uint32_t k = 0; k < SHARDS; k++) atomic_store(&s_shards[k].lock.v, 0);
}

/* For readers of a core (coreinfo.c): the shards and their layout, as this compiler laid them out. */
struct lt_core_live lt_core_live = {
    s_shards, SHARDS, sizeof(struct shard),
    { offsetof(struct shard, capacity), sizeof(((struct shard *)0)->capacity) },
    { offsetof(struct shard, count), sizeof(((struct shard *)0)->count) },
    { offsetof(struct shard, e), sizeof(((struct shard *)0)->e) },
};
