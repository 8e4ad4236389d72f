/* The agent's wire format (a Unix stream socket; the agent writes with MSG_NOSIGNAL).
 * Mirrored by src/LeakTools.Core/Tracing/Agent/AgentProtocol.cs: change both together.
 *
 * Every record: struct lt_rec_header, then `length` payload bytes. Little-endian, packed.
 *
 * Session: the agent connects, sends HELLO; the controller answers CONFIG; the agent patches the
 * relocation slots and sends READY (or FAILED); then, every tick: STACK records for stacks the
 * controller has not seen, EXPIRED batches, COUNTERS for stacks that changed, STATS. The
 * controller may send FLUSH (report now) or DETACH (unhook, final COUNTERS, BYE). When the
 * process exits the agent sends EXIT, final COUNTERS (live blocks = unfreed at exit), SYNC, and
 * BYE once the controller has answered SYNC_ACK (or after a bounded wait).
 * When the controller's side closes, the agent unhooks itself.
 *
 * Checked frees (CONFIG flag LT_CONFIG_CHECK_FREES; launch mode without sampling): a free or
 * realloc of a pointer that is not live is a bad free. Before the real call runs (glibc may then
 * abort the process), the freeing thread itself writes the STACK records of the problem's stacks
 * (the controller may see a stack id twice) and a PROBLEM record; the agent thread then sends a
 * full report (all COUNTERS, STATS) and SYNC, and the freeing thread waits, bounded, until the
 * controller answers SYNC_ACK (it symbolizes what it needs while the process still exists).
 */
#ifndef LEAKTOOLS_AGENT_PROTOCOL_H
#define LEAKTOOLS_AGENT_PROTOCOL_H

#include <stdint.h>

#define LT_PROTOCOL_VERSION 1
#define LT_TOKEN_LENGTH 32

enum lt_record_type {
    /* agent -> controller */
    LT_REC_HELLO = 1,
    LT_REC_READY = 2,
    LT_REC_FAILED = 3,
    LT_REC_STACK = 4,
    LT_REC_COUNTERS = 5,
    LT_REC_EXPIRED = 6,
    LT_REC_STATS = 7,
    LT_REC_EXIT = 8,
    LT_REC_BYE = 9,
    LT_REC_MESSAGE = 10,
    LT_REC_PROBLEM = 11,
    LT_REC_SYNC = 12,
    /* controller -> agent */
    LT_REC_CONFIG = 64,
    LT_REC_FLUSH = 65,
    LT_REC_DETACH = 66,
    LT_REC_SYNC_ACK = 67,
};

#pragma pack(push, 1)
struct lt_rec_header {
    uint16_t type;
    uint16_t flags;
    uint32_t length;
};

struct lt_rec_hello {
    uint32_t version;
    uint32_t pid;
    uint64_t monotonic_ns;      /* CLOCK_MONOTONIC of the agent when it said hello */
    uint32_t flags;             /* LT_HELLO_* */
    uint32_t sessions;          /* earlier sessions of this agent (0 = freshly loaded) */
    char token[LT_TOKEN_LENGTH];
};
#define LT_HELLO_LAUNCH 1u      /* loaded by LD_PRELOAD at program start */

struct lt_rec_config {
    uint64_t expire_ns;
    uint64_t sample_interval;   /* bytes, 0 = off */
    uint64_t tick_ns;
    uint32_t depth;
    uint32_t flags;             /* LT_CONFIG_* */
};
#define LT_CONFIG_CHECK_FREES 1u   /* judge every free (honoured in launch mode without sampling) */

struct lt_rec_ready {
    uint32_t hooked_slots;      /* relocation slots now pointing at the hooks */
    uint32_t foreign_slots;     /* slots bound to another implementation, left alone */
    uint32_t modules;
    uint32_t functions;         /* bit per enum lt_fn resolved */
    uint64_t malloc_address;    /* the malloc the program is bound to (names the allocator's module) */
};

struct lt_rec_failed {
    uint32_t code;              /* LT_FAIL_* */
    char message[];             /* UTF-8, not terminated */
};
#define LT_FAIL_NO_ALLOCATOR 1
#define LT_FAIL_NO_MEMORY 2
#define LT_FAIL_BUSY 3
#define LT_FAIL_CONFIG 4

/* STACK: uint32 id, uint32 depth, then depth uint64 addresses, innermost first: the allocator
 * function's entry, then return addresses. */
struct lt_rec_stack {
    uint32_t id;
    uint32_t depth;
    uint64_t frames[];
};

/* COUNTERS: an array of these (absolute values since the session began). */
struct lt_rec_counter {
    uint32_t stack;
    uint32_t reserved;
    uint64_t alloc_count, alloc_bytes, free_count, free_bytes;
    uint64_t expired_count, expired_bytes, fae_count, fae_bytes;
    /* with sampling: estimated totals (counts in 1/1024 units), else zero */
    uint64_t est_alloc_count, est_alloc_bytes, est_free_count, est_free_bytes;
    uint64_t est_expired_count, est_expired_bytes, est_fae_count, est_fae_bytes;
};

/* EXPIRED: an array of these; the block expired at time + expire_ns. */
struct lt_rec_expired {
    uint32_t stack;
    uint32_t flags;             /* LT_BLOCK_SAMPLED */
    uint64_t size;
    uint64_t time;              /* CLOCK_MONOTONIC of the allocation, ns */
    uint64_t address;
};

struct lt_rec_stats {
    uint64_t monotonic_ns;
    uint64_t allocations, frees, unknown_frees, failed_allocations;
    uint64_t live_blocks, live_bytes;
    uint64_t stacks, forks, stack_overflow, hooked_slots, modules;
};

/* PROBLEM: a free (or realloc, reallocarray, cfree) of a pointer that is not live. */
struct lt_rec_problem {
    uint32_t kind;              /* LT_PROBLEM_* */
    uint32_t tid;
    uint64_t address;
    uint64_t size;              /* DOUBLE_FREE: the block's size; else 0 */
    uint64_t time;              /* CLOCK_MONOTONIC of the bad free, ns */
    uint32_t stack;             /* the bad free's stack */
    uint32_t alloc_stack;       /* DOUBLE_FREE: where the block was allocated; else 0 */
    uint32_t first_free_stack;  /* DOUBLE_FREE: where it was freed first; else 0 */
    uint32_t function;          /* the agent's enum lt_fn of the bad call */
};
#define LT_PROBLEM_DOUBLE_FREE 1
#define LT_PROBLEM_INVALID_FREE 2

/* SYNC (agent -> controller) and SYNC_ACK (controller -> agent, the same sequence number). */
struct lt_rec_sync {
    uint32_t sequence;
    uint32_t reserved;
};

struct lt_rec_bye {
    uint32_t reason;            /* LT_BYE_* */
};
#define LT_BYE_DETACHED 1
#define LT_BYE_EXIT 2
#pragma pack(pop)

#endif
