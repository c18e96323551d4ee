/*
 * vmcu platform API: the only interface generated code uses to talk to the world.
 *
 * The application defines `int vmcu_main(void)`; the platform owns the real entry point
 * (host: main(), which takes the input and output file paths from argv; Cortex-M: the reset
 * handler, which uses semihosting files in QEMU's working directory) and exits with
 * vmcu_main's return value.
 *
 * Exit status: 0 success, 1 vmcu_fail(), 2 CPU fault (Cortex-M), anything else is the
 * application's own.
 */
#ifndef VMCU_PLATFORM_H
#define VMCU_PLATFORM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Application entry point, called once by the platform; its return value is the exit status. */
int vmcu_main(void);

/* Reads the whole input blob into buf and returns its size; fails if it is larger than n. */
size_t vmcu_read_input(void *buf, size_t n);

/* Appends n bytes to the output blob. */
void vmcu_write_output(const void *buf, size_t n);

/*
 * Marks the start of region `region` (the index of the op about to run); -1 after the last op.
 * Costs a call and one byte load; the instruction counter attributes instructions to regions
 * from these calls. Instructions outside any op (startup, I/O) belong to region -1.
 */
void vmcu_mark(int region);

/* Flushes the output and exits with `status`. */
void vmcu_exit(int status) __attribute__((noreturn));

/* Prints "vmcu: fail: <msg>" on the console and exits with status 1. */
void vmcu_fail(const char *msg) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* VMCU_PLATFORM_H */
