/*
 * Minimal Cortex-M4/M7 startup: vector table, reset handler and fault handlers.
 *
 * The reset handler copies .data, zeroes .bss, enables the FPU, turns on division-by-zero traps
 * and programs the MPU so that the usual silent corruptions fault instead (later regions win):
 *   0: no access to the 1 MiB below RAM, where the stack (placed at the bottom of RAM by the
 *      linker script) goes when it overflows;
 *   1, 3: no access to the 8 MiB from the start of flash and of RAM (what QEMU's MPS2 maps there,
 *      mirrors included), so that the board's own limits hold at run time;
 *   2: the board's flash, read-only, so a stray write into weights faults;
 *   4: the board's RAM, read-write, not executable.
 * Every fault ends in vmcu_fault_report, which prints the cause through semihosting and exits
 * with status 2, so a crashed program is reported instead of hanging QEMU.
 */
#include "vmcu_platform.h"
#include "vmcu_semihost.h"

#include <stdint.h>
#include <string.h>

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SCB_CCR 0xE000ED14u
#define SCB_CFSR 0xE000ED28u
#define SCB_HFSR 0xE000ED2Cu
#define SCB_MMFAR 0xE000ED34u
#define SCB_BFAR 0xE000ED38u
#define SCB_CPACR 0xE000ED88u
#define MPU_TYPE 0xE000ED90u
#define MPU_CTRL 0xE000ED94u
#define MPU_RNR 0xE000ED98u
#define MPU_RBAR 0xE000ED9Cu
#define MPU_RASR 0xE000EDA0u

#define CCR_DIV_0_TRP (1u << 4)
#define MPU_RASR_XN (1u << 28)
#define MPU_RASR_AP_NONE (0u << 24)
#define MPU_RASR_AP_RO (6u << 24)
#define MPU_RASR_AP_RW (3u << 24)
#define MPU_CTRL_PRIVDEFENA (1u << 2)
#define MPU_GUARD_BYTES (1u << 20)
#define MPU_FENCE_BYTES (8u << 20)

/* Defined by the linker script (link_cm.ld.in); absolute symbols carry sizes in their address. */
extern uint32_t __vmcu_data_start[], __vmcu_data_end[], __vmcu_bss_start[], __vmcu_bss_end[];
extern const uint32_t __vmcu_data_load[];
extern uint8_t __vmcu_stack_limit[], __vmcu_stack_top[];
extern const uint8_t __vmcu_flash_start[], __vmcu_flash_size[], __vmcu_ram_start[], __vmcu_ram_size[];

void vmcu_reset_handler(void) __attribute__((noreturn));
void vmcu_fault_report(const uint32_t *frame, uint32_t ipsr) __attribute__((noreturn, used));
static void vmcu_fault_entry(void);

typedef union {
    void (*handler)(void);
    void *stack;
} vmcu_vector_t;

__attribute__((section(".isr_vector"), used)) const vmcu_vector_t vmcu_vectors[16] = {
    {.stack = __vmcu_stack_top},   {.handler = vmcu_reset_handler}, {.handler = vmcu_fault_entry},
    {.handler = vmcu_fault_entry}, {.handler = vmcu_fault_entry},   {.handler = vmcu_fault_entry},
    {.handler = vmcu_fault_entry}, {.handler = 0},                  {.handler = 0},
    {.handler = 0},                {.handler = 0},                  {.handler = vmcu_fault_entry},
    {.handler = vmcu_fault_entry}, {.handler = 0},                  {.handler = vmcu_fault_entry},
    {.handler = vmcu_fault_entry},
};

static uint32_t log2_ceil(uint32_t x)
{
    return x <= 1 ? 0 : 32u - (uint32_t)__builtin_clz(x - 1);
}

/* Covers [base, base + bytes) with one region, trimming the top with subregions (eighths). */
static void mpu_region(uint32_t index, uint32_t base, uint32_t bytes, uint32_t attributes)
{
    uint32_t log2 = log2_ceil(bytes);
    log2 = log2 < 5 ? 5 : log2;
    if (log2 > 31 || (base & ((1u << log2) - 1)) != 0) {
        return;
    }
    uint32_t disabled = 0;
    if (log2 >= 8) {
        uint32_t eighth = 1u << (log2 - 3);
        disabled = (0xFFu << ((bytes + eighth - 1) / eighth)) & 0xFFu;
    }
    REG(MPU_RNR) = index;
    REG(MPU_RBAR) = base;
    REG(MPU_RASR) = attributes | (disabled << 8) | ((log2 - 1) << 1) | 1u;
}

static void mpu_init(void)
{
    if (((REG(MPU_TYPE) >> 8) & 0xFFu) < 5) {
        return;
    }
    uint32_t flash = (uint32_t)(uintptr_t)__vmcu_flash_start;
    uint32_t ram = (uint32_t)(uintptr_t)__vmcu_ram_start;
    if (ram >= MPU_GUARD_BYTES) {
        mpu_region(0, ram - MPU_GUARD_BYTES, MPU_GUARD_BYTES, MPU_RASR_XN | MPU_RASR_AP_NONE);
    }
    mpu_region(1, flash, MPU_FENCE_BYTES, MPU_RASR_XN | MPU_RASR_AP_NONE);
    mpu_region(2, flash, (uint32_t)(uintptr_t)__vmcu_flash_size, MPU_RASR_AP_RO);
    mpu_region(3, ram, MPU_FENCE_BYTES, MPU_RASR_XN | MPU_RASR_AP_NONE);
    mpu_region(4, ram, (uint32_t)(uintptr_t)__vmcu_ram_size, MPU_RASR_XN | MPU_RASR_AP_RW);
    REG(MPU_CTRL) = MPU_CTRL_PRIVDEFENA | 1u;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
}

void vmcu_reset_handler(void)
{
    REG(SCB_CPACR) |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    size_t data_bytes = (size_t)((uint8_t *)__vmcu_data_end - (uint8_t *)__vmcu_data_start);
    size_t bss_bytes = (size_t)((uint8_t *)__vmcu_bss_end - (uint8_t *)__vmcu_bss_start);
    memcpy(__vmcu_data_start, __vmcu_data_load, data_bytes);
    memset(__vmcu_bss_start, 0, bss_bytes);
    REG(SCB_CCR) |= CCR_DIV_0_TRP;
    mpu_init();
    vmcu_platform_run();
}

/* Switches to a known-good stack (the faulting one may be the overflowed one) and reports. */
__attribute__((naked)) static void vmcu_fault_entry(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "mrs r1, ipsr\n\t"
                     "movw r2, #:lower16:__vmcu_stack_top\n\t"
                     "movt r2, #:upper16:__vmcu_stack_top\n\t"
                     "mov sp, r2\n\t"
                     "b vmcu_fault_report\n\t");
}

static char *append(char *out, const char *s)
{
    while (*s != '\0') {
        *out++ = *s++;
    }
    return out;
}

static char *append_hex(char *out, const char *label, uint32_t value)
{
    out = append(out, label);
    out = append(out, "0x");
    for (int shift = 28; shift >= 0; shift -= 4) {
        *out++ = "0123456789abcdef"[(value >> shift) & 0xFu];
    }
    return out;
}

static const char *fault_name(uint32_t exception)
{
    switch (exception) {
    case 2:
        return "NMI";
    case 3:
        return "HardFault";
    case 4:
        return "MemManage fault";
    case 5:
        return "BusFault";
    case 6:
        return "UsageFault";
    default:
        return "unexpected exception";
    }
}

static int within(uint32_t addr, const uint8_t *start, uint32_t bytes)
{
    return addr - (uint32_t)(uintptr_t)start < bytes;
}

static const char *protection_cause(uint32_t addr)
{
    uint32_t flash_bytes = (uint32_t)(uintptr_t)__vmcu_flash_size;
    if (within(addr, __vmcu_flash_start, flash_bytes)) {
        return "write to read-only flash at ";
    }
    if (within(addr, __vmcu_flash_start, MPU_FENCE_BYTES)) {
        return "access beyond the board's flash at ";
    }
    if (within(addr, __vmcu_ram_start, MPU_FENCE_BYTES)) {
        return "access beyond the board's RAM at ";
    }
    return "memory protection violation at ";
}

static char *append_cause(char *out, const uint32_t *frame, uint32_t cfsr)
{
    if ((uintptr_t)frame < (uintptr_t)__vmcu_stack_limit) {
        return append(out, "stack overflow");
    }
    if (cfsr & (1u << 25)) {
        return append(out, "integer division by zero");
    }
    if (cfsr & (1u << 24)) {
        return append(out, "unaligned access");
    }
    if (cfsr & (1u << 16)) {
        return append(out, "undefined instruction");
    }
    if (cfsr & (3u << 17)) {
        return append(out, "invalid state or return address");
    }
    if (cfsr & (1u << 19)) {
        return append(out, "coprocessor (FPU) not enabled");
    }
    if (cfsr & 1u) {
        return append(out, "instruction fetch from non-executable memory");
    }
    if (cfsr & (1u << 7)) {
        return append_hex(out, protection_cause(REG(SCB_MMFAR)), REG(SCB_MMFAR));
    }
    if (cfsr & (1u << 15)) {
        return append_hex(out, "bus error at ", REG(SCB_BFAR));
    }
    if (cfsr & 0xFFFFu) {
        return append(out, "memory access error");
    }
    return append(out, "unknown cause");
}

void vmcu_fault_report(const uint32_t *frame, uint32_t ipsr)
{
    char line[192];
    uint32_t cfsr = REG(SCB_CFSR);
    int stacked = (uintptr_t)frame >= (uintptr_t)__vmcu_stack_limit;
    char *out = append(line, "vmcu: ");
    out = append(out, fault_name(ipsr & 0x1FFu));
    out = append(out, ": ");
    out = append_cause(out, frame, cfsr);
    if (stacked) {
        out = append_hex(out, "; pc=", frame[6]);
        out = append_hex(out, " lr=", frame[5]);
    }
    out = append_hex(out, " cfsr=", cfsr);
    out = append_hex(out, " hfsr=", REG(SCB_HFSR));
    out = append(out, "\n");
    *out = '\0';
    vmcu_console_write(line);
    vmcu_exit(2);
}
