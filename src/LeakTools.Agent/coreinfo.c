/* A descriptor for readers of a core (Find-LeakedAllocation). A core of a process with the agent
 * loaded holds the agent's live table (every tracked block: address, size, stack id) and its stack
 * records; this exported object says where they are and how the compiler laid out every field a
 * reader uses (offsetof/sizeof, never assumed), so the reader finds it through its dynamic symbol,
 * checks the magic and version, and reads everything else through it.
 *
 * Mirrored by src/LeakTools.Core/Heap/AgentAllocationSites.cs. Compatible changes append fields
 * (`size` grows); anything else bumps LT_CORE_VERSION. The object is writable on purpose: it holds
 * relocated pointers, and a writable page the loader wrote to is in every kind of core (the
 * kernel's, gcore's, Invoke-CoreCapture's), where relocated read-only data may be left out. */
#include "agent.h"

#define LT_CORE_MAGIC "LeakTools agent"   /* 15 characters and a NUL */
#define LT_CORE_VERSION 1

#define FIELD(type, member) { offsetof(type, member), sizeof(((type *)0)->member) }

struct lt_core_info {
    char magic[16];
    uint32_t version;
    uint32_t size;                    /* sizeof(struct lt_core_info) */
    const void *enabled;              /* lt_enabled: nonzero while a session is active */
    const struct lt_core_live *live;  /* the shards (live.c) */
    const void *stack_records;        /* s_records: the array of record pointers, by stack id */
    const void *stack_count;          /* s_count: the highest stack id in use */
    uint32_t enabled_size;
    uint32_t stack_count_size;
    uint32_t stack_record_pointer_size;
    uint32_t max_depth;               /* frames in a record at most */
    uint32_t block_size;              /* sizeof(struct lt_block): the stride of a shard's entries */
    uint32_t block_sampled;           /* LT_BLOCK_SAMPLED in block.flags */
    struct lt_core_field block_ptr;   /* the block's address (0: an empty slot) */
    struct lt_core_field block_bytes; /* bytes requested */
    struct lt_core_field block_time;  /* CLOCK_MONOTONIC of the allocation, ns */
    struct lt_core_field block_stack; /* stack id (0: the stack table was full) */
    struct lt_core_field block_flags;
    struct lt_core_field record_id;
    struct lt_core_field record_depth;
    struct lt_core_field record_frames; /* offset of frames[0]; size of one frame */
    const void *filter;               /* lt_live_filter: the pointer to the sampling filter (no addresses in it) */
    uint64_t filter_bytes;
    /* appended (size 176): the pointer to the freed cache of checked frees (addresses of freed blocks only) */
    const void *freed;
    uint64_t freed_bytes;
};

LT_EXPORT struct lt_core_info leaktools_agent_coreinfo = {
    .magic = LT_CORE_MAGIC,
    .version = LT_CORE_VERSION,
    .size = sizeof(struct lt_core_info),
    .enabled = &lt_enabled,
    .live = &lt_core_live,
    .stack_records = &s_records,
    .stack_count = &s_count,
    .enabled_size = sizeof lt_enabled,
    .stack_count_size = sizeof s_count,
    .stack_record_pointer_size = sizeof(struct lt_stack *),
    .max_depth = LT_MAX_DEPTH,
    .block_size = sizeof(struct lt_block),
    .block_sampled = LT_BLOCK_SAMPLED,
    .block_ptr = FIELD(struct lt_block, ptr),
    .block_bytes = FIELD(struct lt_block, size),
    .block_time = FIELD(struct lt_block, time),
    .block_stack = FIELD(struct lt_block, stack),
    .block_flags = FIELD(struct lt_block, flags),
    .record_id = FIELD(struct lt_stack, id),
    .record_depth = FIELD(struct lt_stack, depth),
    .record_frames = { offsetof(struct lt_stack, frames), sizeof(uintptr_t) },
    .filter = &lt_live_filter,
    .filter_bytes = 1u << LT_FILTER_BITS,
    .freed = &lt_freed_cache,
    .freed_bytes = ((uint64_t)1 << (LT_LIVE_SHARD_BITS + LT_FREED_BITS)) * sizeof(struct lt_freed),
};
