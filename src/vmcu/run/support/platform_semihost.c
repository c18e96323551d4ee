/*
 * vmcu platform for bare-metal Cortex-M under QEMU: all I/O goes through ARM semihosting
 * (BKPT 0xAB), so the program needs no UART driver and runs unchanged on any M-profile machine.
 * Input and output are the files vmcu_input.bin and vmcu_output.bin in QEMU's working directory.
 */
#include "vmcu_platform.h"
#include "vmcu_semihost.h"

#include <stdint.h>

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define MODE_RB 1
#define MODE_WB 5

static const char input_name[] = "vmcu_input.bin";
static const char output_name[] = "vmcu_output.bin";
static int output_handle = -1;

/* The byte at __vmcu_mark_base + region + 1 is read by vmcu_mark; the plugin decodes the address. */
extern const volatile uint8_t __vmcu_mark_base[];

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static int open_file(const char *name, uint32_t len, int mode)
{
    const uintptr_t args[3] = {(uintptr_t)name, (uintptr_t)mode, len};
    return semihost(SYS_OPEN, args);
}

static void close_file(int handle)
{
    const uintptr_t args[1] = {(uintptr_t)handle};
    semihost(SYS_CLOSE, args);
}

void vmcu_console_write(const char *s)
{
    semihost(SYS_WRITE0, s);
}

size_t vmcu_read_input(void *buf, size_t n)
{
    int handle = open_file(input_name, sizeof input_name - 1, MODE_RB);
    if (handle < 0) {
        vmcu_fail("cannot open vmcu_input.bin");
    }
    const uintptr_t flen_args[1] = {(uintptr_t)handle};
    int size = semihost(SYS_FLEN, flen_args);
    if (size < 0) {
        vmcu_fail("cannot size vmcu_input.bin");
    }
    if ((size_t)size > n) {
        vmcu_fail("input is larger than the input buffer");
    }
    const uintptr_t read_args[3] = {(uintptr_t)handle, (uintptr_t)buf, (uintptr_t)size};
    int missing = size > 0 ? semihost(SYS_READ, read_args) : 0;
    close_file(handle);
    if (missing != 0) {
        vmcu_fail("cannot read vmcu_input.bin");
    }
    return (size_t)size;
}

void vmcu_write_output(const void *buf, size_t n)
{
    const uintptr_t args[3] = {(uintptr_t)output_handle, (uintptr_t)buf, n};
    if (n > 0 && semihost(SYS_WRITE, args) != 0) {
        vmcu_fail("cannot write vmcu_output.bin");
    }
}

__attribute__((noinline)) void vmcu_mark(int region)
{
    (void)__vmcu_mark_base[region + 1];
}

void vmcu_exit(int status)
{
    if (output_handle >= 0) {
        close_file(output_handle);
        output_handle = -1;
    }
    const uintptr_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status};
    for (;;) {
        semihost(SYS_EXIT_EXTENDED, args);
    }
}

void vmcu_fail(const char *msg)
{
    vmcu_console_write("vmcu: fail: ");
    vmcu_console_write(msg);
    vmcu_console_write("\n");
    vmcu_exit(1);
}

void vmcu_platform_run(void)
{
    output_handle = open_file(output_name, sizeof output_name - 1, MODE_WB);
    if (output_handle < 0) {
        vmcu_fail("cannot create vmcu_output.bin");
    }
    vmcu_exit(vmcu_main());
}
