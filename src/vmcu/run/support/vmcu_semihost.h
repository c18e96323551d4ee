/*
 * Private interface between startup_cm.c and platform_semihost.c (not used by generated code).
 */
#ifndef VMCU_SEMIHOST_H
#define VMCU_SEMIHOST_H

/* Opens the output file, runs vmcu_main() and exits with its status; called by the reset handler. */
void vmcu_platform_run(void) __attribute__((noreturn));

/* Writes a NUL-terminated string to the debugger console (QEMU's stderr). */
void vmcu_console_write(const char *s);

#endif /* VMCU_SEMIHOST_H */
