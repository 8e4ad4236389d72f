/* In-process CFI unwinder over .eh_frame_hdr/.eh_frame (works without frame pointers, e.g. gcc -O2).
 *
 * For each return address: find the module (sorted table, republished after dlopen/dlclose), the
 * FDE (binary search of the .eh_frame_hdr table), run the CIE and FDE programs up to the address,
 * and keep the three rules a call site needs on x86-64: CFA (rsp+n, rbp+n or *(rbp+n) for
 * realigned frames), where the return address is, where the caller's rbp is. The rule is cached by
 * address in a lock-free table shared by all threads (entries are self-validating: key ^ value),
 * so the steady state costs a hash, two loads and the stack reads per frame.
 *
 * Every stack read is bounded to the current thread's stack: [sp at the hook, top of stack), the
 * top being __libc_stack_end for the main thread and the thread descriptor for pthreads (it sits
 * above the stack in the same mapping). A thread on a foreign stack (coroutines, sigaltstack)
 * gets only its immediate caller. A wrong rule can therefore give a wrong frame, never a fault. */
#define _GNU_SOURCE
#include "agent.h"

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <string.h>

extern void *__libc_stack_end __attribute__((weak));

/* DWARF constants (DWARF 5 section 6.4.2, LSB 5.0 "DWARF Exception Header Encoding") */
enum {
    DW_EH_PE_absptr = 0x00, DW_EH_PE_uleb128 = 0x01, DW_EH_PE_udata2 = 0x02, DW_EH_PE_udata4 = 0x03,
    DW_EH_PE_udata8 = 0x04, DW_EH_PE_sleb128 = 0x09, DW_EH_PE_sdata2 = 0x0a, DW_EH_PE_sdata4 = 0x0b,
    DW_EH_PE_sdata8 = 0x0c, DW_EH_PE_pcrel = 0x10, DW_EH_PE_datarel = 0x30, DW_EH_PE_indirect = 0x80,
    DW_EH_PE_omit = 0xff,
};
enum {
    DW_CFA_nop = 0x00, DW_CFA_set_loc = 0x01, DW_CFA_advance_loc1 = 0x02, DW_CFA_advance_loc2 = 0x03,
    DW_CFA_advance_loc4 = 0x04, DW_CFA_offset_extended = 0x05, DW_CFA_restore_extended = 0x06,
    DW_CFA_undefined = 0x07, DW_CFA_same_value = 0x08, DW_CFA_register = 0x09,
    DW_CFA_remember_state = 0x0a, DW_CFA_restore_state = 0x0b, DW_CFA_def_cfa = 0x0c,
    DW_CFA_def_cfa_register = 0x0d, DW_CFA_def_cfa_offset = 0x0e, DW_CFA_def_cfa_expression = 0x0f,
    DW_CFA_expression = 0x10, DW_CFA_offset_extended_sf = 0x11, DW_CFA_def_cfa_sf = 0x12,
    DW_CFA_def_cfa_offset_sf = 0x13, DW_CFA_val_offset = 0x14, DW_CFA_val_offset_sf = 0x15,
    DW_CFA_val_expression = 0x16, DW_CFA_GNU_args_size = 0x2e, DW_CFA_GNU_negative_offset_extended = 0x2f,
};
enum { DW_OP_deref = 0x06, DW_OP_breg6 = 0x76 };

/* ---------- module table ---------- */

struct uw_module {
    uintptr_t lo, hi;               /* executable segment */
    const uint8_t *hdr;             /* .eh_frame_hdr */
    const int32_t *table;           /* its sorted (pc, fde) table, both relative to hdr */
    uint32_t fde_count;
    uint32_t readable;              /* PF_R as well as PF_X */
};

struct uw_modules {
    uint32_t count;
    uint64_t retired_at;
    struct uw_modules *next_retired;
    struct uw_module m[];
};

static _Atomic(struct uw_modules *) s_modules;
static struct uw_modules *s_retired;
static lt_lock s_modules_lock;

struct build_ctx { struct uw_modules *set; uint32_t capacity; };

static int build_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct build_ctx *b = data;
    (void)size;
    const uint8_t *hdr = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) hdr = (const uint8_t *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        if (p->p_type != PT_LOAD || !(p->p_flags & PF_X)) continue;
        if (b->set->count == b->capacity) return 1;
        struct uw_module *m = &b->set->m[b->set->count++];
        m->lo = info->dlpi_addr + p->p_vaddr;
        m->hi = m->lo + p->p_memsz;
        m->hdr = NULL;
        m->table = NULL;
        m->fde_count = 0;
        m->readable = (p->p_flags & PF_R) != 0;
        /* version 1, table of sdata4 pairs relative to the header (what every linker writes) */
        if (hdr && hdr[0] == 1 && hdr[3] == (DW_EH_PE_datarel | DW_EH_PE_sdata4)) {
            const uint8_t *q = hdr + 4;
            uint8_t ptr_enc = hdr[1], count_enc = hdr[2];
            /* eh_frame_ptr: skip (we reach FDEs through the table) */
            if ((ptr_enc & 0x0f) == DW_EH_PE_sdata4 || (ptr_enc & 0x0f) == DW_EH_PE_udata4) q += 4;
            else if ((ptr_enc & 0x0f) == DW_EH_PE_absptr || (ptr_enc & 0x0f) == DW_EH_PE_udata8 || (ptr_enc & 0x0f) == DW_EH_PE_sdata8) q += 8;
            else continue;
            uint32_t count;
            if ((count_enc & 0x0f) == DW_EH_PE_udata4 || (count_enc & 0x0f) == DW_EH_PE_sdata4) { memcpy(&count, q, 4); q += 4; }
            else if ((count_enc & 0x0f) == DW_EH_PE_absptr || (count_enc & 0x0f) == DW_EH_PE_udata8) { uint64_t c8; memcpy(&c8, q, 8); count = (uint32_t)c8; q += 8; }
            else continue;
            m->hdr = hdr;
            m->table = (const int32_t *)q;
            m->fde_count = count;
        }
    }
    return 0;
}

static void sort_modules(struct uw_modules *s)
{
    for (uint32_t i = 1; i < s->count; i++) {
        struct uw_module t = s->m[i];
        uint32_t j = i;
        while (j > 0 && s->m[j - 1].lo > t.lo) { s->m[j] = s->m[j - 1]; j--; }
        s->m[j] = t;
    }
}

/* Rebuilds the module table (not from a hook: takes the loader's dl_iterate_phdr lock). */
void lt_unwind_refresh_modules(void)
{
    lt_lock_take(&s_modules_lock);
    uint32_t capacity = 1024;
    for (;;) {
        size_t bytes = sizeof(struct uw_modules) + capacity * sizeof(struct uw_module);
        struct uw_modules *set = lt_mmap(bytes);
        if (!set) break;
        set->count = 0;
        struct build_ctx b = { set, capacity };
        dl_iterate_phdr(build_cb, &b);
        if (set->count == capacity) { lt_munmap(set, bytes); capacity *= 4; continue; }
        sort_modules(set);
        struct uw_modules *old = atomic_exchange(&s_modules, set);
        uint64_t now = lt_now();
        if (old) { old->retired_at = now; old->next_retired = s_retired; s_retired = old; }
        /* a hook that read the old pointer finishes within microseconds; give it a minute */
        struct uw_modules **pp = &s_retired;
        while (*pp) {
            struct uw_modules *r = *pp;
            if (now - r->retired_at > 60ull * 1000000000ull) {
                *pp = r->next_retired;
                lt_munmap(r, sizeof(struct uw_modules) + 1024 * sizeof(struct uw_module)); /* size rounded by the kernel */
            } else {
                pp = &r->next_retired;
            }
        }
        break;
    }
    lt_lock_release(&s_modules_lock);
    lt_unwind_flush_cache();
}

static const struct uw_module *find_module(uintptr_t pc)
{
    struct uw_modules *s = atomic_load_explicit(&s_modules, memory_order_acquire);
    if (!s) return NULL;
    uint32_t lo = 0, hi = s->count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (s->m[mid].lo <= pc) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const struct uw_module *m = &s->m[lo - 1];
    return pc < m->hi ? m : NULL;
}

/* The readable executable segment holding pc (for the dlopen hook's return gadget). */
int lt_code_range(uintptr_t pc, uintptr_t *lo, uintptr_t *hi)
{
    const struct uw_module *m = find_module(pc);
    if (!m || !m->readable) return 0;
    *lo = m->lo;
    *hi = m->hi;
    return 1;
}

/* ---------- DWARF CFI ---------- */

static uint64_t uleb(const uint8_t **p, const uint8_t *end)
{
    uint64_t r = 0;
    int shift = 0;
    while (*p < end) {
        uint8_t b = *(*p)++;
        if (shift < 64) r |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
    }
    return r;
}

static int64_t sleb(const uint8_t **p, const uint8_t *end)
{
    int64_t r = 0;
    int shift = 0;
    uint8_t b = 0;
    while (*p < end) {
        b = *(*p)++;
        if (shift < 64) r |= (int64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
    }
    if (shift < 64 && (b & 0x40)) r |= -((int64_t)1 << shift);
    return r;
}

/* Reads an encoded pointer; returns 0 for encodings we do not expect in .eh_frame. */
static int read_encoded(uint8_t enc, const uint8_t **p, const uint8_t *end, const uint8_t *hdr, uintptr_t *out)
{
    if (enc == DW_EH_PE_omit) { *out = 0; return 1; }
    const uint8_t *start = *p;
    uint64_t v;
    switch (enc & 0x0f) {
    case DW_EH_PE_absptr: case DW_EH_PE_udata8: case DW_EH_PE_sdata8:
        if (end - *p < 8) return 0;
        memcpy(&v, *p, 8); *p += 8; break;
    case DW_EH_PE_udata4: { uint32_t u; if (end - *p < 4) return 0; memcpy(&u, *p, 4); *p += 4; v = u; break; }
    case DW_EH_PE_sdata4: { int32_t s; if (end - *p < 4) return 0; memcpy(&s, *p, 4); *p += 4; v = (uint64_t)(int64_t)s; break; }
    case DW_EH_PE_udata2: { uint16_t u; if (end - *p < 2) return 0; memcpy(&u, *p, 2); *p += 2; v = u; break; }
    case DW_EH_PE_sdata2: { int16_t s; if (end - *p < 2) return 0; memcpy(&s, *p, 2); *p += 2; v = (uint64_t)(int64_t)s; break; }
    case DW_EH_PE_uleb128: v = uleb(p, end); break;
    case DW_EH_PE_sleb128: v = (uint64_t)sleb(p, end); break;
    default: return 0;
    }
    switch (enc & 0x70) {
    case 0: break;
    case DW_EH_PE_pcrel: v += (uintptr_t)start; break;
    case DW_EH_PE_datarel: v += (uintptr_t)hdr; break;
    default: return 0;
    }
    if (enc & DW_EH_PE_indirect) return 0;
    *out = (uintptr_t)v;
    return 1;
}

enum { R_UNDEF = 0, R_SAME, R_OFFSET };
enum { CFA_NONE = 0, CFA_RSP, CFA_RBP, CFA_DEREF_RBP };

struct cfi_state {
    int cfa_kind;
    int64_t cfa_off;
    int rbp_rule; int64_t rbp_off;
    int ra_rule; int64_t ra_off;
};

struct rule {
    int cfa_kind;          /* CFA_* ; CFA_NONE: cannot unwind */
    int outermost;         /* the return address is undefined: end of the stack */
    int64_t cfa_off;
    int rbp_saved; int64_t rbp_off;
    int64_t ra_off;
};

struct cie_info {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_reg;
    uint8_t fde_enc;
    int signal;
    int has_z;
    const uint8_t *insns, *end;
};

static int parse_cie(const uint8_t *cie, const uint8_t *hdr, struct cie_info *c)
{
    uint32_t len32;
    memcpy(&len32, cie, 4);
    const uint8_t *p = cie + 4, *end;
    if (len32 == 0xffffffffu) { uint64_t l; memcpy(&l, p, 8); p += 8; end = p + l; }
    else end = p + len32;
    p += 4;   /* CIE id */
    uint8_t version = *p++;
    const char *aug = (const char *)p;
    p += strlen(aug) + 1;
    if (aug[0] == 'e' && aug[1] == 'h') return 0;
    c->code_align = uleb(&p, end);
    c->data_align = sleb(&p, end);
    c->ra_reg = version == 1 ? *p++ : uleb(&p, end);
    c->fde_enc = DW_EH_PE_absptr;
    c->signal = 0;
    c->has_z = aug[0] == 'z';
    if (c->has_z) {
        uint64_t alen = uleb(&p, end);
        const uint8_t *aend = p + alen;
        for (const char *a = aug + 1; *a; a++) {
            if (*a == 'R') c->fde_enc = *p++;
            else if (*a == 'L') p++;
            else if (*a == 'P') { uint8_t e = *p++; uintptr_t ignored; if (!read_encoded(e & 0x7f, &p, aend, hdr, &ignored)) return 0; }
            else if (*a == 'S') c->signal = 1;
        }
        p = aend;
    }
    c->insns = p;
    c->end = end;
    return 1;
}

#define STATE_STACK 8

/* Runs CFA instructions until the location passes `pc`. Returns 0 on unsupported input. */
static int run_cfi(const uint8_t *p, const uint8_t *end, const struct cie_info *c, const uint8_t *hdr,
                   uintptr_t loc, uintptr_t pc, struct cfi_state *st, const struct cfi_state *initial)
{
    struct cfi_state stack[STATE_STACK];
    int depth = 0;
    while (p < end && loc <= pc) {
        uint8_t op = *p++;
        uint64_t reg;
        int64_t off;
        switch (op & 0xc0) {
        case 0x40: loc += (op & 0x3f) * c->code_align; continue;
        case 0x80:
            reg = op & 0x3f;
            off = (int64_t)uleb(&p, end) * c->data_align;
            goto set_offset;
        case 0xc0:
            reg = op & 0x3f;
            goto restore;
        }
        switch (op) {
        case DW_CFA_nop: break;
        case DW_CFA_set_loc: { uintptr_t v; if (!read_encoded(c->fde_enc, &p, end, hdr, &v)) return 0; loc = v; break; }
        case DW_CFA_advance_loc1: loc += *p++ * c->code_align; break;
        case DW_CFA_advance_loc2: { uint16_t d; memcpy(&d, p, 2); p += 2; loc += d * c->code_align; break; }
        case DW_CFA_advance_loc4: { uint32_t d; memcpy(&d, p, 4); p += 4; loc += d * c->code_align; break; }
        case DW_CFA_offset_extended: reg = uleb(&p, end); off = (int64_t)uleb(&p, end) * c->data_align; goto set_offset;
        case DW_CFA_offset_extended_sf: reg = uleb(&p, end); off = sleb(&p, end) * c->data_align; goto set_offset;
        case DW_CFA_GNU_negative_offset_extended: reg = uleb(&p, end); off = -(int64_t)uleb(&p, end) * c->data_align; goto set_offset;
        case DW_CFA_restore_extended: reg = uleb(&p, end); goto restore;
        case DW_CFA_undefined:
            reg = uleb(&p, end);
            if (reg == 6) st->rbp_rule = R_UNDEF;
            else if (reg == c->ra_reg) st->ra_rule = R_UNDEF;
            break;
        case DW_CFA_same_value:
            reg = uleb(&p, end);
            if (reg == 6) st->rbp_rule = R_SAME;
            else if (reg == c->ra_reg) return 0;
            break;
        case DW_CFA_register:
            reg = uleb(&p, end); uleb(&p, end);
            if (reg == 6 || reg == c->ra_reg) return 0;
            break;
        case DW_CFA_remember_state:
            if (depth == STATE_STACK) return 0;
            stack[depth++] = *st;
            break;
        case DW_CFA_restore_state:
            if (depth == 0) return 0;
            *st = stack[--depth];
            break;
        case DW_CFA_def_cfa:
            reg = uleb(&p, end);
            st->cfa_off = (int64_t)uleb(&p, end);
            st->cfa_kind = reg == 7 ? CFA_RSP : reg == 6 ? CFA_RBP : CFA_NONE;
            break;
        case DW_CFA_def_cfa_sf:
            reg = uleb(&p, end);
            st->cfa_off = sleb(&p, end) * c->data_align;
            st->cfa_kind = reg == 7 ? CFA_RSP : reg == 6 ? CFA_RBP : CFA_NONE;
            break;
        case DW_CFA_def_cfa_register:
            reg = uleb(&p, end);
            st->cfa_kind = reg == 7 ? CFA_RSP : reg == 6 ? CFA_RBP : CFA_NONE;
            break;
        case DW_CFA_def_cfa_offset: st->cfa_off = (int64_t)uleb(&p, end); break;
        case DW_CFA_def_cfa_offset_sf: st->cfa_off = sleb(&p, end) * c->data_align; break;
        case DW_CFA_def_cfa_expression: {
            uint64_t len = uleb(&p, end);
            const uint8_t *e = p, *eend = p + len;
            p = eend;
            /* gcc's stack realignment: DW_OP_breg6 <off>; DW_OP_deref */
            if (len >= 3 && e[0] == DW_OP_breg6) {
                e++;
                int64_t o = sleb(&e, eend);
                if (e + 1 == eend && *e == DW_OP_deref) { st->cfa_kind = CFA_DEREF_RBP; st->cfa_off = o; break; }
            }
            st->cfa_kind = CFA_NONE;
            break;
        }
        case DW_CFA_expression: case DW_CFA_val_expression: {
            reg = uleb(&p, end);
            uint64_t len = uleb(&p, end);
            p += len;
            if (reg == 6) st->rbp_rule = R_UNDEF;       /* value unknown from here on */
            else if (reg == c->ra_reg) return 0;
            break;
        }
        case DW_CFA_val_offset: case DW_CFA_val_offset_sf:
            reg = uleb(&p, end);
            if (op == DW_CFA_val_offset) uleb(&p, end); else sleb(&p, end);
            if (reg == 6 || reg == c->ra_reg) return 0;
            break;
        case DW_CFA_GNU_args_size: uleb(&p, end); break;
        default: return 0;
        }
        continue;
    set_offset:
        if (reg == 6) { st->rbp_rule = R_OFFSET; st->rbp_off = off; }
        else if (reg == c->ra_reg) { st->ra_rule = R_OFFSET; st->ra_off = off; }
        continue;
    restore:
        if (!initial) continue;
        if (reg == 6) { st->rbp_rule = initial->rbp_rule; st->rbp_off = initial->rbp_off; }
        else if (reg == c->ra_reg) { st->ra_rule = initial->ra_rule; st->ra_off = initial->ra_off; }
        continue;
    }
    return 1;
}

static int compute_rule(uintptr_t pc, struct rule *r)
{
    memset(r, 0, sizeof *r);
    const struct uw_module *m = find_module(pc);
    if (!m || !m->table || m->fde_count == 0) return 0;
    const uint8_t *hdr = m->hdr;
    const int32_t *t = m->table;
    uint32_t lo = 0, hi = m->fde_count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if ((uintptr_t)(hdr + t[2 * mid]) <= pc) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return 0;
    const uint8_t *fde = hdr + t[2 * (lo - 1) + 1];
    uint32_t len32;
    memcpy(&len32, fde, 4);
    const uint8_t *p = fde + 4, *end;
    if (len32 == 0xffffffffu) { uint64_t l; memcpy(&l, p, 8); p += 8; end = p + l; }
    else end = p + len32;
    const uint8_t *cie_ptr_pos = p;
    uint32_t cie_off;
    memcpy(&cie_off, p, 4);
    p += 4;
    struct cie_info c;
    if (!parse_cie(cie_ptr_pos - cie_off, hdr, &c)) return 0;
    if (c.signal) return 0;
    uintptr_t pc_begin, pc_range;
    if (!read_encoded(c.fde_enc, &p, end, hdr, &pc_begin)) return 0;
    if (!read_encoded(c.fde_enc & 0x0f, &p, end, hdr, &pc_range)) return 0;
    if (pc < pc_begin || pc >= pc_begin + pc_range) return 0;
    if (c.has_z) { uint64_t alen = uleb(&p, end); p += alen; }
    struct cfi_state st = { CFA_NONE, 0, R_SAME, 0, R_UNDEF, 0 }, initial;
    if (!run_cfi(c.insns, c.end, &c, hdr, 0, UINTPTR_MAX, &st, NULL)) return 0;
    initial = st;
    if (!run_cfi(p, end, &c, hdr, pc_begin, pc, &st, &initial)) return 0;
    if (st.ra_rule == R_UNDEF) { r->outermost = 1; r->cfa_kind = st.cfa_kind ? st.cfa_kind : CFA_RSP; return 1; }
    if (st.cfa_kind == CFA_NONE || st.ra_rule != R_OFFSET) return 0;
    r->cfa_kind = st.cfa_kind;
    r->cfa_off = st.cfa_off;
    r->rbp_saved = st.rbp_rule == R_OFFSET;
    r->rbp_off = st.rbp_off;
    r->ra_off = st.ra_off;
    return 1;
}

static void stack_spans(void);

/* ---------- rule cache: 64-bit packed rule, entry valid when key ^ value == pc ---------- */

#define CACHE_BITS 16
struct cache_entry { _Atomic uint64_t key, value; };
static struct cache_entry *s_cache;

static uint64_t pack(const struct rule *r)
{
    if (r->cfa_off < -(1 << 23) || r->cfa_off >= (1 << 23)) return 0;
    if (r->rbp_off < -32768 || r->rbp_off > 32767 || r->ra_off < -32768 || r->ra_off > 32767) return 0;
    return (uint64_t)r->cfa_kind | ((uint64_t)(r->outermost & 1) << 2) | ((uint64_t)(r->rbp_saved & 1) << 3) |
           (((uint64_t)r->cfa_off & 0xffffff) << 8) | (((uint64_t)r->rbp_off & 0xffff) << 32) | (((uint64_t)r->ra_off & 0xffff) << 48);
}

static void unpack(uint64_t v, struct rule *r)
{
    r->cfa_kind = (int)(v & 3);
    r->outermost = (int)((v >> 2) & 1);
    r->rbp_saved = (int)((v >> 3) & 1);
    r->cfa_off = (int64_t)(v << 32) >> 40;
    r->rbp_off = (int16_t)(v >> 32);
    r->ra_off = (int16_t)(v >> 48);
}

static inline uint32_t cache_index(uintptr_t pc)
{
    return (uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> (64 - CACHE_BITS));
}

static int rule_for(uintptr_t pc, struct rule *r)
{
    struct cache_entry *e = s_cache ? &s_cache[cache_index(pc)] : NULL;
    if (e) {
        uint64_t v = atomic_load_explicit(&e->value, memory_order_relaxed);
        uint64_t k = atomic_load_explicit(&e->key, memory_order_relaxed);
        if (v != 0 && (k ^ v) == pc) { unpack(v, r); return 1; }
    }
    if (!compute_rule(pc, r)) return 0;
    uint64_t v = pack(r);
    if (e && v) {
        atomic_store_explicit(&e->value, v, memory_order_relaxed);
        atomic_store_explicit(&e->key, pc ^ v, memory_order_relaxed);
    }
    return 1;
}

void lt_walk_invalidate(void);

void lt_unwind_flush_cache(void)
{
    lt_walk_invalidate();
    if (!s_cache) return;
    for (uint32_t i = 0; i < (1u << CACHE_BITS); i++) atomic_store_explicit(&s_cache[i].value, 0, memory_order_relaxed);
}

static int walk_init(void);

int lt_unwind_init(void)
{
    if (!s_cache) s_cache = lt_mmap(sizeof(struct cache_entry) << CACHE_BITS);
    if (!s_cache || !walk_init()) return 0;
    stack_spans();
    lt_unwind_refresh_modules();
    return 1;
}

/* ---------- the walk ---------- */

static __thread uintptr_t t_stack_hi __attribute__((tls_model("initial-exec")));
static __thread uintptr_t t_stack_span __attribute__((tls_model("initial-exec")));
static uintptr_t s_main_span = 8u << 20, s_thread_span = 8u << 20;

/* How far below its top a stack may reach: RLIMIT_STACK for the main thread (the kernel keeps other
 * mappings at least that far below the stack's top) and for threads (glibc's default thread stack
 * size); unlimited: 1 GiB (the legacy mmap layout puts mappings far from the stack) and 32 MiB. */
static void stack_spans(void)
{
    struct { uint64_t cur, max; } r;
    if (lt_syscall6(SYS_prlimit64, 0, 3 /* RLIMIT_STACK */, 0, (long)&r, 0, 0) != 0) return;
    if (r.cur == UINT64_MAX) { s_main_span = 1ull << 30; s_thread_span = 32ull << 20; }
    else { s_main_span = r.cur < (1ull << 30) ? r.cur : 1ull << 30; s_thread_span = s_main_span; }
}

/* Top of the current thread's stack, or 0 when sp is not on it (a coroutine's or an alternate
 * signal stack, or a thread with a larger stack than the default, below its span): then only the
 * immediate caller is recorded, since reads between sp and the top could cross unmapped memory. */
static uintptr_t stack_top(uintptr_t sp)
{
    uintptr_t hi = t_stack_hi;
    if (hi == 0) {
        if (lt_gettid() == lt_getpid()) { hi = &__libc_stack_end ? (uintptr_t)__libc_stack_end : 0; t_stack_span = s_main_span; }
        else { hi = (uintptr_t)pthread_self(); t_stack_span = s_thread_span; }  /* the descriptor sits above this thread's stack */
        if (hi == 0) hi = 1;
        t_stack_hi = hi;
    }
    if (hi <= sp || hi - sp > t_stack_span) return 0;
    return hi;
}

static inline int readable(uintptr_t a, uintptr_t lo, uintptr_t hi)
{
    return a >= lo && a + 8 <= hi && (a & 7) == 0;
}

/* The reads a walk made (addresses and values), so a later walk from the same place can be
 * confirmed by re-reading them instead of walking again. */
struct lt_reads {
    uintptr_t *addr, *val;
    uint32_t count, capacity;
    int used_initial_bp;   /* the walk's result depends on the caller's rbp as given */
};

#define READ_WORD(dst, a)                                                        \
    do {                                                                         \
        uintptr_t a_ = (a);                                                      \
        if (!readable(a_, lo, hi)) goto done;                                    \
        (dst) = *(const uintptr_t *)a_;                                          \
        if (rec) {                                                               \
            if (rec->count == rec->capacity) { rec = NULL; full = 1; }           \
            else { rec->addr[rec->count] = a_; rec->val[rec->count++] = (dst); } \
        }                                                                        \
    } while (0)

/* Writes return addresses starting with `pc` (the hook's caller); returns how many. With `rec`,
 * records every stack read (rec->count = 0 if there were too many to record). */
static int walk(uintptr_t pc, uintptr_t sp, uintptr_t bp, uintptr_t *out, int max, struct lt_reads *rec)
{
    if (max <= 0) return 0;
    int n = 0, full = 0, bp_initial = 1;
    struct lt_reads *keep = rec;
    if (rec) { rec->count = 0; rec->used_initial_bp = 0; }
    out[n++] = pc;
    uintptr_t lo = sp, hi = stack_top(sp);
    if (hi == 0) goto done;
    while (n < max) {
        struct rule r;
        uintptr_t cfa, ra;
        if (rule_for(pc - 1, &r)) {
            if (r.outermost) break;
            if (r.cfa_kind == CFA_RSP) cfa = sp + (uintptr_t)r.cfa_off;
            else if (r.cfa_kind == CFA_RBP) { cfa = bp + (uintptr_t)r.cfa_off; if (bp_initial && keep) keep->used_initial_bp = 1; }
            else {
                if (bp_initial && keep) keep->used_initial_bp = 1;
                READ_WORD(cfa, bp + (uintptr_t)r.cfa_off);
            }
            if (cfa <= sp || cfa > hi) break;
            READ_WORD(ra, cfa + (uintptr_t)r.ra_off);
            if (r.rbp_saved) { READ_WORD(bp, cfa + (uintptr_t)r.rbp_off); bp_initial = 0; }
        } else {
            /* no CFI here (JIT code, hand-written assembly): try the frame-pointer chain */
            if (bp_initial && keep) keep->used_initial_bp = 1;
            if (bp < sp) break;
            READ_WORD(ra, bp + 8);
            cfa = bp + 16;
            READ_WORD(bp, bp);
            bp_initial = 0;
        }
        if (ra < 4096) break;
        sp = cfa;
        pc = ra;
        out[n++] = pc;
    }
done:
    if (full && keep) keep->count = 0, keep->capacity = 0;
    return n;
}

int lt_unwind_from(uintptr_t pc, uintptr_t sp, uintptr_t bp, uintptr_t *out, int max)
{
    return walk(pc, sp, bp, out, max, NULL);
}

/* ---------- walk cache ----------
 * A loop allocating from one place unwinds the same stack again and again. Each thread (hashed
 * into 256 slots, taken with a try-lock; its frees into a slot of their own) remembers its last
 * walk: where it started (pc, sp, and rbp if the walk used it) and every word it read.
 * Re-reading those words and finding them unchanged proves the walk would come out the same, so
 * the stack id is reused without walking, hashing or looking it up. The words lie between sp and
 * the top of the same thread's stack: readable, as in the walk itself. */

#define WALK_SLOTS 256
#define WALK_READS (3 * LT_MAX_DEPTH + 8)

struct walk_slot {
    _Atomic int busy;
    int tid;
    uint32_t gen, fn, depth, stack, count, use_bp;
    uintptr_t pc, sp, bp;
    uintptr_t addr[WALK_READS], val[WALK_READS];
};

static struct walk_slot *s_walk;
static _Atomic uint32_t s_walk_gen = 1;
static __thread int t_tid __attribute__((tls_model("initial-exec")));

void lt_walk_invalidate(void) { atomic_fetch_add(&s_walk_gen, 1); }

static int walk_init(void)
{
    if (!s_walk) s_walk = lt_mmap(sizeof(struct walk_slot) * WALK_SLOTS);
    return s_walk != NULL;
}

uint32_t lt_stack_of(uintptr_t entry, uint32_t fn, uintptr_t pc, uintptr_t sp, uintptr_t bp, uint32_t depth)
{
    int tid = t_tid;
    if (LT_UNLIKELY(tid == 0)) t_tid = tid = lt_gettid();
    /* frees have a slot of their own (checked frees unwind them): a loop's malloc and free, from
     * two call sites, do not evict each other's walk */
    uint32_t key = (uint32_t)tid * 2 + (fn == LT_FREE || fn == LT_CFREE);
    struct walk_slot *w = s_walk ? &s_walk[(key * 2654435761u) >> 24] : NULL;
    int own = w && !atomic_exchange_explicit(&w->busy, 1, memory_order_acquire);
    uint32_t gen = atomic_load_explicit(&s_walk_gen, memory_order_relaxed);
    if (own && w->tid == tid && w->gen == gen && w->pc == pc && w->sp == sp && w->fn == fn && w->depth == depth &&
        (!w->use_bp || w->bp == bp) && w->stack != 0) {
        uint32_t i = 0;
        while (i < w->count && *(const volatile uintptr_t *)w->addr[i] == w->val[i]) i++;
        if (i == w->count) {
            uint32_t id = w->stack;
            atomic_store_explicit(&w->busy, 0, memory_order_release);
            return id;
        }
    }
    uintptr_t frames[LT_MAX_DEPTH];
    frames[0] = entry;
    struct lt_reads rec = { own ? w->addr : NULL, own ? w->val : NULL, 0, own ? WALK_READS : 0, 0 };
    uint32_t n = 1 + (uint32_t)walk(pc, sp, bp, frames + 1, (int)depth - 1, own ? &rec : NULL);
    uint32_t id = lt_stack_intern(frames, n);
    if (own) {
        w->tid = tid;
        w->gen = gen;
        w->pc = pc;
        w->sp = sp;
        w->bp = bp;
        w->fn = fn;
        w->depth = depth;
        w->count = rec.count;
        w->use_bp = (uint32_t)rec.used_initial_bp;
        w->stack = rec.capacity ? id : 0;   /* too many reads to record: never reused */
        atomic_store_explicit(&w->busy, 0, memory_order_release);
    }
    return id;
}
