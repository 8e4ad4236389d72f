/* Relocation-slot (GOT/PLT) patching: every module's JUMP_SLOT and GLOB_DAT slots that name an
 * allocation function are pointed at our hooks, libc's own included (its internal callers of
 * malloc go through them), and again after each dlopen. One aligned 8-byte store per slot, so
 * threads running meanwhile see either the old or the new target. Originals are kept and written
 * back on detach, only where the slot still holds our hook. */
#define _GNU_SOURCE
#include "agent.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>

const char *const lt_fn_names[LT_FN_COUNT] = {
    "malloc", "calloc", "realloc", "reallocarray", "free", "cfree", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "dlopen", "dlmopen", "dlclose",
};

void *lt_real[LT_FN_COUNT];
void *lt_dladdr;

struct slot_rec {
    _Atomic(uintptr_t) *slot;
    uintptr_t original;
    uintptr_t module_base;
    uintptr_t module_dynamic;
    uint32_t fn;
    uint32_t readonly;      /* in the RELRO part: mprotect around writes */
};

static lt_lock s_patch_lock;
static struct slot_rec *s_slots;
static uint32_t s_slot_count, s_slot_capacity;
static uint32_t s_foreign;
static unsigned long long s_last_adds, s_last_subs;
static _Atomic int s_modules;

static const long PAGE = 4096;

/* ---------- module walking ---------- */

struct module_view {
    uintptr_t base;
    const char *name;
    const ElfW(Phdr) *phdr;
    int phnum;
    const ElfW(Dyn) *dynamic;
    uintptr_t lo, hi;               /* extent of the PT_LOADs */
    uintptr_t relro_lo, relro_hi;   /* read-only after relocation (page-rounded as ld.so does) */
    const ElfW(Sym) *symtab;
    const char *strtab;
    const uint16_t *versym;
    const uint32_t *gnu_hash;
    const uint32_t *sysv_hash;
    const ElfW(Rela) *rela;
    size_t rela_size;
    const ElfW(Rela) *jmprel;
    size_t jmprel_size;
};

static uintptr_t agent_anchor(void) { return (uintptr_t)&agent_anchor; }

static uintptr_t dyn_ptr(const struct module_view *m, ElfW(Addr) v)
{
    /* ld.so relocates most d_ptr entries in place; a raw offset is below the base */
    if (m->base != 0 && v < m->base) return m->base + v;
    return v;
}

static int view_module(struct dl_phdr_info *info, struct module_view *m)
{
    memset(m, 0, sizeof *m);
    m->base = info->dlpi_addr;
    m->name = info->dlpi_name ? info->dlpi_name : "";
    m->phdr = info->dlpi_phdr;
    m->phnum = info->dlpi_phnum;
    m->lo = UINTPTR_MAX;
    for (int i = 0; i < m->phnum; i++) {
        const ElfW(Phdr) *p = &m->phdr[i];
        if (p->p_type == PT_LOAD) {
            uintptr_t a = m->base + p->p_vaddr, b = a + p->p_memsz;
            if (a < m->lo) m->lo = a;
            if (b > m->hi) m->hi = b;
        } else if (p->p_type == PT_DYNAMIC) {
            m->dynamic = (const ElfW(Dyn) *)(m->base + p->p_vaddr);
        } else if (p->p_type == PT_GNU_RELRO) {
            m->relro_lo = (m->base + p->p_vaddr) & ~(uintptr_t)(PAGE - 1);
            m->relro_hi = (m->base + p->p_vaddr + p->p_memsz) & ~(uintptr_t)(PAGE - 1);
        }
    }
    if (!m->dynamic) return 0;
    int pltrel = DT_RELA;
    for (const ElfW(Dyn) *d = m->dynamic; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: m->symtab = (const ElfW(Sym) *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_STRTAB: m->strtab = (const char *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_VERSYM: m->versym = (const uint16_t *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_GNU_HASH: m->gnu_hash = (const uint32_t *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_HASH: m->sysv_hash = (const uint32_t *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_RELA: m->rela = (const ElfW(Rela) *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_RELASZ: m->rela_size = d->d_un.d_val; break;
        case DT_JMPREL: m->jmprel = (const ElfW(Rela) *)dyn_ptr(m, d->d_un.d_ptr); break;
        case DT_PLTRELSZ: m->jmprel_size = d->d_un.d_val; break;
        case DT_PLTREL: pltrel = (int)d->d_un.d_val; break;
        }
    }
    if (pltrel != DT_RELA) m->jmprel = NULL;   /* x86-64 uses RELA only */
    return m->symtab && m->strtab;
}

static int skip_module(const struct module_view *m)
{
    uintptr_t self = agent_anchor();
    if (self >= m->lo && self < m->hi) return 1;                   /* the agent itself */
    uintptr_t ldso = (uintptr_t)getauxval(AT_BASE);
    if (ldso != 0 && m->base == ldso) return 1;                     /* ld.so: its own minimal allocator */
    if (strncmp(m->name, "linux-vdso", 10) == 0 || strncmp(m->name, "linux-gate", 10) == 0) return 1;
    return 0;
}

typedef int (*module_fn)(struct module_view *m, void *ctx);
struct walk_ctx { module_fn fn; void *ctx; int stop; };

static int walk_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk_ctx *w = data;
    (void)size;
    struct module_view m;
    if (!view_module(info, &m)) return 0;
    if (w->fn(&m, w->ctx)) { w->stop = 1; return 1; }
    return 0;
}

static void walk_modules(module_fn fn, void *ctx)
{
    struct walk_ctx w = { fn, ctx, 0 };
    dl_iterate_phdr(walk_cb, &w);
}

/* ---------- symbol lookup (GNU hash, else SysV hash) ---------- */

static uint32_t gnu_hash_of(const char *s)
{
    uint32_t h = 5381;
    for (; *s; s++) h = h * 33 + (uint8_t)*s;
    return h;
}

static unsigned long sysv_hash_of(const char *s)
{
    unsigned long h = 0, g;
    for (; *s; s++) {
        h = (h << 4) + (uint8_t)*s;
        g = h & 0xf0000000;
        if (g) h ^= g >> 24;
        h &= ~g;
    }
    return h;
}

static int symbol_usable(const struct module_view *m, uint32_t index, const char *name)
{
    const ElfW(Sym) *s = &m->symtab[index];
    if (s->st_shndx == SHN_UNDEF || s->st_value == 0) return 0;
    int type = ELF64_ST_TYPE(s->st_info);
    if (type != STT_FUNC) return 0;
    int bind = ELF64_ST_BIND(s->st_info);
    if (bind != STB_GLOBAL && bind != STB_WEAK) return 0;
    if (m->versym && (m->versym[index] & 0x8000)) return 0;        /* hidden (non-default) version */
    return strcmp(m->strtab + s->st_name, name) == 0;
}

static uintptr_t lookup_in(const struct module_view *m, const char *name)
{
    if (m->gnu_hash) {
        const uint32_t *h = m->gnu_hash;
        uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
        const uint64_t *bloom = (const uint64_t *)(h + 4);
        const uint32_t *buckets = (const uint32_t *)(bloom + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        if (nbuckets == 0) return 0;
        uint32_t hash = gnu_hash_of(name);
        uint32_t i = buckets[hash % nbuckets];
        if (i < symoffset) return 0;
        for (;; i++) {
            uint32_t h2 = chain[i - symoffset];
            if ((hash | 1) == (h2 | 1) && symbol_usable(m, i, name)) return m->base + m->symtab[i].st_value;
            if (h2 & 1) break;
        }
        return 0;
    }
    if (m->sysv_hash) {
        uint32_t nbucket = m->sysv_hash[0];
        const uint32_t *bucket = m->sysv_hash + 2, *chain = bucket + nbucket;
        if (nbucket == 0) return 0;
        for (uint32_t i = bucket[sysv_hash_of(name) % nbucket]; i != 0; i = chain[i])
            if (symbol_usable(m, i, name)) return m->base + m->symtab[i].st_value;
    }
    return 0;
}

struct resolve_ctx { int found; };

static int resolve_cb(struct module_view *m, void *ctx)
{
    struct resolve_ctx *r = ctx;
    if (skip_module(m)) return 0;
    for (int f = 0; f < LT_FN_COUNT; f++) {
        if (lt_real[f]) continue;
        uintptr_t a = lookup_in(m, lt_fn_names[f]);
        if (a) { lt_real[f] = (void *)a; r->found++; }
    }
    return 0;
}

static int resolve_dladdr_cb(struct module_view *m, void *ctx)
{
    (void)ctx;
    if (skip_module(m)) return 0;
    uintptr_t a = lookup_in(m, "dladdr");
    if (a) { lt_dladdr = (void *)a; return 1; }
    return 0;
}

/* The definitions the program binds to: the first module in load order (main program, preloads,
 * then libraries breadth-first, as the global scope) that defines each name. ld.so is skipped:
 * glibc < 2.26 exports its minimal bootstrap malloc as a weak symbol. */
int lt_resolve_real(void)   /* nonzero once malloc and free are known (kept across sessions) */
{
    struct resolve_ctx r = { 0 };
    walk_modules(resolve_cb, &r);
    /* glibc < 2.34 keeps dlopen and dladdr in libdl: without it loaded there is no dlopen to
     * hook, and the agent thread still notices new modules on its ticks */
    if (!lt_dladdr) walk_modules(resolve_dladdr_cb, NULL);
    return lt_real[LT_MALLOC] && lt_real[LT_FREE];
}

static int glibc_cb(struct module_view *m, void *ctx)
{
    int *is = ctx;
    uintptr_t malloc_at = (uintptr_t)lt_real[LT_MALLOC];
    if (malloc_at < m->lo || malloc_at >= m->hi) return 0;
    *is = lookup_in(m, "__libc_malloc") == malloc_at && lookup_in(m, "__libc_free") == (uintptr_t)lt_real[LT_FREE];
    return 1;
}

/* The program's malloc and free are glibc's (its heap layout can be read). */
int lt_allocator_is_glibc(void)
{
    int is = 0;
    if (lt_real[LT_MALLOC] && lt_real[LT_FREE]) walk_modules(glibc_cb, &is);
    return is;
}

/* ---------- slots ---------- */

static int fn_of_name(const char *n)
{
    switch (n[0]) {
    case 'm': case 'c': case 'r': case 'f': case 'p': case 'a': case 'v': case 'd': break;
    default: return -1;
    }
    for (int f = 0; f < LT_FN_COUNT; f++)
        if (strcmp(n, lt_fn_names[f]) == 0) return f;
    return -1;
}

static int slot_known(_Atomic(uintptr_t) *slot)
{
    for (uint32_t i = 0; i < s_slot_count; i++)
        if (s_slots[i].slot == slot) return (int)i;
    return -1;
}

static int add_slot_record(void)
{
    void *array = s_slots;
    size_t capacity = s_slot_capacity;
    int ok = lt_grow(&array, &capacity, s_slot_count, (size_t)s_slot_count + 1, sizeof *s_slots, 256);
    s_slots = array;
    s_slot_capacity = (uint32_t)capacity;
    return ok;
}

/* One aligned 8-byte compare-and-swap. A slot in the RELRO part is made writable first and left
 * so while hooked: a module still being loaded by another thread may be relocated after we
 * patched it, and ld.so must then still be able to write its page (it protects it afterwards
 * itself). Restoring puts the protection back once the original is in place. */
static int write_slot(_Atomic(uintptr_t) *slot, uintptr_t expect, uintptr_t value, int readonly, int reprotect)
{
    void *page = (void *)((uintptr_t)slot & ~(uintptr_t)(PAGE - 1));
    if (readonly && lt_mprotect(page, PAGE, PROT_READ | PROT_WRITE) != 0) return 0;  /* unmapped meanwhile */
    uintptr_t e = expect;
    int ok = atomic_compare_exchange_strong(slot, &e, value);
    if (readonly && reprotect && ok) lt_mprotect(page, PAGE, PROT_READ);
    return ok;
}

static int patch_cb(struct module_view *m, void *ctx)
{
    int *patched = ctx;
    atomic_fetch_add_explicit(&s_modules, 1, memory_order_relaxed);
    if (skip_module(m)) return 0;
    for (int pass = 0; pass < 2; pass++) {
        const ElfW(Rela) *r = pass == 0 ? m->rela : m->jmprel;
        size_t n = (pass == 0 ? m->rela_size : m->jmprel_size) / sizeof(ElfW(Rela));
        if (!r) continue;
        for (size_t i = 0; i < n; i++) {
            uint32_t type = ELF64_R_TYPE(r[i].r_info);
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) continue;
            uint32_t sym = ELF64_R_SYM(r[i].r_info);
            if (sym == 0) continue;
            int f = fn_of_name(m->strtab + m->symtab[sym].st_name);
            if (f < 0 || !lt_hooks[f] || !lt_real[f]) continue;
            _Atomic(uintptr_t) *slot = (_Atomic(uintptr_t) *)(m->base + r[i].r_offset);
            uintptr_t v = atomic_load_explicit(slot, memory_order_relaxed);
            uintptr_t hook = (uintptr_t)lt_hooks[f];
            if (v == hook) continue;
            int lazy = v >= m->lo && v < m->hi;   /* unresolved lazy binding: the module's own PLT */
            if (v != (uintptr_t)lt_real[f] && !lazy) { s_foreign++; continue; }
            int readonly = (uintptr_t)slot >= m->relro_lo && (uintptr_t)slot < m->relro_hi;
            int known = slot_known(slot);
            if (known < 0) {
                if (!add_slot_record()) return 1;
                known = (int)s_slot_count;
                s_slots[known] = (struct slot_rec){ slot, v, m->base, (uintptr_t)m->dynamic, (uint32_t)f, (uint32_t)readonly };
            } else {
                s_slots[known].original = v;
            }
            if (write_slot(slot, v, hook, readonly, 0)) {
                if ((uint32_t)known == s_slot_count) s_slot_count++;
                (*patched)++;
            }
        }
    }
    return 0;
}

int lt_patch_all(void)
{
    int patched = 0;
    lt_lock_take(&s_patch_lock);
    atomic_store_explicit(&s_modules, 0, memory_order_relaxed);
    s_foreign = 0;
    walk_modules(patch_cb, &patched);
    lt_lock_release(&s_patch_lock);
    return patched;
}

struct present_ctx { uintptr_t *pairs; size_t count, capacity; };

static int present_cb(struct module_view *m, void *ctx)
{
    struct present_ctx *p = ctx;
    void *array = p->pairs;
    int ok = lt_grow(&array, &p->capacity, p->count, p->count + 1, 2 * sizeof(uintptr_t), 512);
    p->pairs = array;
    if (!ok) return 1;
    p->pairs[2 * p->count] = m->base;
    p->pairs[2 * p->count + 1] = (uintptr_t)m->dynamic;
    p->count++;
    return 0;
}

/* Drops records of modules that dlclose unloaded (their slots are gone). Under the patch lock. */
static void prune_slots(void)
{
    if (s_slot_count == 0) return;
    struct present_ctx p = { NULL, 0, 0 };
    walk_modules(present_cb, &p);
    uint32_t w = 0;
    for (uint32_t i = 0; i < s_slot_count; i++) {
        int found = 0;
        for (size_t k = 0; k < p.count && !found; k++)
            found = p.pairs[2 * k] == s_slots[i].module_base && p.pairs[2 * k + 1] == s_slots[i].module_dynamic;
        if (found) s_slots[w++] = s_slots[i];
    }
    s_slot_count = w;
    lt_munmap(p.pairs, p.capacity * 2 * sizeof(uintptr_t));
}

void lt_restore_all(void)
{
    lt_lock_take(&s_patch_lock);
    prune_slots();
    for (uint32_t i = 0; i < s_slot_count; i++) {
        struct slot_rec *s = &s_slots[i];
        write_slot(s->slot, (uintptr_t)lt_hooks[s->fn], s->original, (int)s->readonly, 1);
    }
    s_slot_count = 0;
    lt_lock_release(&s_patch_lock);
}

/* Lazy binding may have overwritten a slot we patched (a thread was inside the PLT stub when we
 * wrote it): point it back at the hook. */
int lt_verify_slots(void)
{
    int fixed = 0;
    lt_lock_take(&s_patch_lock);
    for (uint32_t i = 0; i < s_slot_count; i++) {
        struct slot_rec *s = &s_slots[i];
        uintptr_t v = atomic_load_explicit(s->slot, memory_order_relaxed);
        if (v == (uintptr_t)lt_hooks[s->fn] || v != (uintptr_t)lt_real[s->fn]) continue;
        if (write_slot(s->slot, v, (uintptr_t)lt_hooks[s->fn], (int)s->readonly, 0)) fixed++;
    }
    lt_lock_release(&s_patch_lock);
    return fixed;
}

uint32_t lt_hooked_slots(void) { return s_slot_count; }
uint32_t lt_foreign_slots(void) { return s_foreign; }

static int counters_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned long long *c = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        c[0] = info->dlpi_adds;
        c[1] = info->dlpi_subs;
    }
    return 1;
}

int lt_modules_changed(void)
{
    unsigned long long c[2] = { 0, 0 };
    dl_iterate_phdr(counters_cb, c);
    int changed = c[0] != s_last_adds || c[1] != s_last_subs;
    s_last_adds = c[0];
    s_last_subs = c[1];
    return changed;
}

void lt_after_dlclose_prune(void)
{
    lt_lock_take(&s_patch_lock);
    prune_slots();
    lt_lock_release(&s_patch_lock);
}

/* In a forked child the agent thread is gone; whoever held the patch lock is gone with it. */
void lt_patch_reset_lock(void)
{
    atomic_store(&s_patch_lock.v, 0);
}

/* Forked child: put the originals back without asking the loader (its locks may be held by a
 * thread that did not come along); the modules are the parent's as of the fork. */
void lt_restore_in_child(void)
{
    for (uint32_t i = 0; i < s_slot_count; i++) {
        struct slot_rec *s = &s_slots[i];
        write_slot(s->slot, (uintptr_t)lt_hooks[s->fn], s->original, (int)s->readonly, 1);
    }
    s_slot_count = 0;
}
