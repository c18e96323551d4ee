/*
 * QEMU TCG plugin: deterministic instruction counts for vmcu programs on Cortex-M.
 *
 * Every instruction is classified once, when QEMU translates its block, from the disassembly
 * mnemonic (and, for branches, the target address) into a class the Cortex-M4 timing table
 * distinguishes; each executed block then adds its per-class counts with inline adds (no
 * callback per instruction). The "regs" counter accumulates the registers moved by LDM/STM/
 * PUSH/POP, whose cost grows with the register list.
 *
 * Regions: vmcu_mark(region) reads the byte at mark_base + region + 1. The plugin watches byte
 * loads made by instructions inside vmcu_mark (address range given as arguments) and decodes
 * the region from the load address, so no guest register needs to be read (plugin API v1 has
 * no register access). QEMU 7.2 drops callbacks registered for reads only (QEMU_PLUGIN_MEM_R),
 * so the plugin registers for both and ignores stores. At each mark, the counters accumulated
 * since the previous mark go to the previous region; instructions outside any op belong to
 * region -1.
 *
 * Arguments: out=FILE (required), mark=ADDR, mark_size=BYTES, mark_base=ADDR (optional).
 * Output (text): a "counters" line naming the columns, a "total" line and one "region R" line
 * per region that executed anything, each followed by the counter values.
 */
#include "qemu_plugin_api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum insn_class {
    C_ALU,
    C_SIMD,
    C_MUL,
    C_DIV,
    C_LOAD,
    C_LOAD_PIPELINED,
    C_LOAD_PAIR,
    C_LOAD_MULTI,
    C_STORE,
    C_STORE_REG,
    C_STORE_PAIR,
    C_STORE_MULTI,
    C_BRANCH_TAKEN,
    C_BRANCH_NOT_TAKEN,
    C_BRANCH_TABLE,
    C_RETURN_POP,
    C_FP,
    C_FP_MAC,
    C_FP_DIV,
    N_CLASSES,
};

#define C_REGS N_CLASSES
#define N_COUNTERS (N_CLASSES + 1)
#define MAX_REGION (1 << 20)

static const char *const counter_names[N_COUNTERS] = {
    "alu", "simd", "mul", "div", "load", "load_pipelined", "load_pair", "load_multi", "store",
    "store_reg", "store_pair", "store_multi", "branch_taken", "branch_not_taken", "branch_table",
    "return_pop", "fp", "fp_mac", "fp_div", "regs",
};

static uint64_t counters[N_COUNTERS];
static uint64_t snapshot[N_COUNTERS];
static uint64_t (*regions)[N_COUNTERS];
static size_t n_regions;
static int64_t current_region = -1;
static char *out_path;
static uint64_t mark_lo, mark_hi, mark_base;

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int starts_any(const char *s, const char *const *prefixes)
{
    for (; *prefixes != NULL; prefixes++) {
        if (starts(s, *prefixes)) {
            return 1;
        }
    }
    return 0;
}

static int is_cond(const char *s)
{
    static const char *const conds[] = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs",
                                        "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", NULL};
    for (const char *const *c = conds; *c != NULL; c++) {
        if (strcmp(s, *c) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Registers in a "{r4, r5-r7, pc}" list; D registers count twice (two words each). */
static unsigned count_regs(const char *ops)
{
    const char *p = strchr(ops, '{');
    unsigned n = 0;
    while (p != NULL && *p != '\0' && *p != '}') {
        while (*p != '\0' && strchr("{, ", *p) != NULL) {
            p++;
        }
        if (*p == '\0' || *p == '}') {
            break;
        }
        unsigned width = *p == 'd' ? 2 : 1;
        const char *digits = strpbrk(p, "0123456789,}");
        unsigned first = digits != NULL ? (unsigned)strtoul(digits, NULL, 10) : 0;
        const char *end = strpbrk(p, ",}");
        const char *dash = strchr(p, '-');
        unsigned count = 1;
        if (dash != NULL && (end == NULL || dash < end)) {
            unsigned last = (unsigned)strtoul(dash + 2, NULL, 10);
            count = last >= first ? last - first + 1 : 1;
        }
        n += count * width;
        p = end;
    }
    return n;
}

static enum insn_class classify_branch(const char *m, const char *ops, uint64_t pc, int *is_branch)
{
    size_t len = strlen(m);
    *is_branch = 1;
    if (strcmp(m, "b") == 0 || strcmp(m, "bl") == 0 || strcmp(m, "bx") == 0 || strcmp(m, "blx") == 0) {
        return C_BRANCH_TAKEN;
    }
    if (len == 3 && m[0] == 'b' && is_cond(m + 1)) {
        /* Static guess: backward conditional branches (loops) taken, forward ones not. */
        const char *hash = strchr(ops, '#');
        uint64_t target = hash != NULL ? strtoull(hash + 1, NULL, 0) : pc + 1;
        return target <= pc ? C_BRANCH_TAKEN : C_BRANCH_NOT_TAKEN;
    }
    if ((len == 4 && (starts(m, "bl") || starts(m, "bx")) && is_cond(m + 2)) ||
        (len == 5 && starts(m, "blx") && is_cond(m + 3))) {
        return C_BRANCH_TAKEN;
    }
    if (strcmp(m, "cbz") == 0 || strcmp(m, "cbnz") == 0) {
        return C_BRANCH_NOT_TAKEN;
    }
    if (starts(m, "tbb") || starts(m, "tbh")) {
        return C_BRANCH_TABLE;
    }
    if (starts(ops, "pc,") && (starts(m, "ldr") || starts(m, "mov") || starts(m, "add"))) {
        return C_BRANCH_TAKEN;
    }
    *is_branch = 0;
    return C_ALU;
}

/* Whether a single store uses a register offset ("[r1, r2]"), which costs a cycle more. */
static int register_offset(const char *ops)
{
    const char *p = strchr(ops, '[');
    const char *comma = p != NULL ? strchr(p, ',') : NULL;
    const char *close = p != NULL ? strchr(p, ']') : NULL;
    return comma != NULL && close != NULL && comma < close && comma[1] == ' ' && comma[2] != '#';
}

static enum insn_class classify(const char *m, const char *ops, uint64_t pc, int prev_load,
                                unsigned *regs)
{
    static const char *const mul[] = {"mul", "mla", "mls", "smul", "smla", "smls", "smmul", "smmla",
                                      "smmls", "smuad", "smusd", "umul", "umla", "umaal", NULL};
    static const char *const simd[] = {"sadd", "ssub", "sasx", "ssax", "qadd", "qsub", "qasx", "qsax",
                                       "qdadd", "qdsub", "shadd", "shsub", "shasx", "shsax", "uadd",
                                       "usub", "uasx", "usax", "uqadd", "uqsub", "uqasx", "uqsax",
                                       "uhadd", "uhsub", "uhasx", "uhsax", "sxtb16", "sxtab16",
                                       "uxtb16", "uxtab16", "sel", "usad", "pkh", "ssat16", "usat16",
                                       NULL};
    static const char *const fp_mac[] = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma",
                                         "vfnms", NULL};
    int is_branch;
    enum insn_class branch = classify_branch(m, ops, pc, &is_branch);
    *regs = 0;
    if (is_branch) {
        return branch;
    }
    if (starts(m, "pop") || starts(m, "ldm") || starts(m, "vpop") || starts(m, "vldm")) {
        *regs = count_regs(ops);
        return strstr(ops, "pc}") != NULL ? C_RETURN_POP : C_LOAD_MULTI;
    }
    if (starts(m, "push") || starts(m, "stm") || starts(m, "vpush") || starts(m, "vstm")) {
        *regs = count_regs(ops);
        return C_STORE_MULTI;
    }
    if (starts(m, "ldrd")) {
        return C_LOAD_PAIR;
    }
    if (starts(m, "strd")) {
        return C_STORE_PAIR;
    }
    if (starts(m, "ldr") || starts(m, "vldr")) {
        return prev_load ? C_LOAD_PIPELINED : C_LOAD;
    }
    if (starts(m, "str") || starts(m, "vstr")) {
        return register_offset(ops) && !prev_load ? C_STORE_REG : C_STORE;
    }
    if (starts(m, "sdiv") || starts(m, "udiv")) {
        return C_DIV;
    }
    if (starts_any(m, mul)) {
        return C_MUL;
    }
    if (starts_any(m, simd)) {
        return C_SIMD;
    }
    if (starts_any(m, fp_mac)) {
        return C_FP_MAC;
    }
    if (starts(m, "vdiv") || starts(m, "vsqrt")) {
        return C_FP_DIV;
    }
    if (m[0] == 'v' && !starts(m, "vmov") && !starts(m, "vmrs") && !starts(m, "vmsr")) {
        return C_FP;
    }
    return C_ALU;
}

/* Adds the counts since the previous mark to the current region, then switches to `next`. */
static void switch_region(int64_t next)
{
    size_t slot = (size_t)(current_region + 1);
    if (slot >= n_regions) {
        size_t grown = slot + 64;
        regions = realloc(regions, grown * sizeof *regions);
        if (regions == NULL) {
            abort();
        }
        memset(regions + n_regions, 0, (grown - n_regions) * sizeof *regions);
        n_regions = grown;
    }
    for (int c = 0; c < N_COUNTERS; c++) {
        regions[slot][c] += counters[c] - snapshot[c];
        snapshot[c] = counters[c];
    }
    current_region = next;
}

static void mark_hit(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu;
    (void)udata;
    if (!qemu_plugin_mem_is_store(info) && qemu_plugin_mem_size_shift(info) == 0 && vaddr >= mark_base &&
        vaddr - mark_base <= MAX_REGION) {
        switch_region((int64_t)(vaddr - mark_base) - 1);
    }
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uint64_t per_class[N_COUNTERS] = {0};
    int prev_load = 0;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        char *text = qemu_plugin_insn_disas(insn);
        char mnemonic[16] = "";
        const char *ops = "";
        if (text != NULL) {
            size_t len = strcspn(text, " .");
            len = len < sizeof mnemonic ? len : sizeof mnemonic - 1;
            memcpy(mnemonic, text, len);
            mnemonic[len] = '\0';
            const char *space = strchr(text, ' ');
            ops = space != NULL ? space + 1 : "";
        }
        unsigned regs;
        enum insn_class c = classify(mnemonic, ops, pc, prev_load, &regs);
        g_free(text);
        per_class[c]++;
        per_class[C_REGS] += regs;
        prev_load = c == C_LOAD || c == C_LOAD_PIPELINED;
        if (mark_hi > mark_lo && pc >= mark_lo && pc < mark_hi) {
            qemu_plugin_register_vcpu_mem_cb(insn, mark_hit, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
                                             NULL);
        }
    }
    for (int c = 0; c < N_COUNTERS; c++) {
        if (per_class[c] != 0) {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counters[c],
                                                     per_class[c]);
        }
    }
}

static void write_counts(FILE *f, const uint64_t *values)
{
    for (int c = 0; c < N_COUNTERS; c++) {
        fprintf(f, " %" PRIu64, values[c]);
    }
    fputc('\n', f);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        perror(out_path);
        return;
    }
    fputs("counters", f);
    for (int c = 0; c < N_COUNTERS; c++) {
        fprintf(f, " %s", counter_names[c]);
    }
    fputs("\ntotal", f);
    write_counts(f, counters);
    switch_region(current_region);
    for (size_t slot = 0; slot < n_regions; slot++) {
        uint64_t any = 0;
        for (int c = 0; c < N_COUNTERS; c++) {
            any |= regions[slot][c];
        }
        if (any != 0) {
            fprintf(f, "region %lld", (long long)slot - 1);
            write_counts(f, regions[slot]);
        }
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    (void)info;
    uint64_t mark_size = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (starts(arg, "out=")) {
            out_path = strdup(arg + 4);
        } else if (starts(arg, "mark=")) {
            mark_lo = strtoull(arg + 5, NULL, 0);
        } else if (starts(arg, "mark_size=")) {
            mark_size = strtoull(arg + 10, NULL, 0);
        } else if (starts(arg, "mark_base=")) {
            mark_base = strtoull(arg + 10, NULL, 0);
        } else {
            fprintf(stderr, "insn_count: unknown argument %s\n", arg);
            return 1;
        }
    }
    if (out_path == NULL) {
        fprintf(stderr, "insn_count: missing out=FILE\n");
        return 1;
    }
    mark_hi = mark_lo + mark_size;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
