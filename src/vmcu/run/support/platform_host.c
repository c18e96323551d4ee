/*
 * vmcu platform for a hosted build (Linux/macOS): `program INPUT OUTPUT`.
 * Used to run generated code natively, under AddressSanitizer and UBSan, before emulation.
 */
#include "vmcu_platform.h"

#include <stdio.h>
#include <stdlib.h>

static const char *input_path;
static FILE *output_file;

size_t vmcu_read_input(void *buf, size_t n)
{
    FILE *f = fopen(input_path, "rb");
    if (f == NULL) {
        vmcu_fail("cannot open the input file");
    }
    size_t got = n > 0 ? fread(buf, 1, n, f) : 0;
    int extra = fgetc(f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        vmcu_fail("cannot read the input file");
    }
    if (extra != EOF) {
        vmcu_fail("input is larger than the input buffer");
    }
    return got;
}

void vmcu_write_output(const void *buf, size_t n)
{
    if (n > 0 && fwrite(buf, 1, n, output_file) != n) {
        vmcu_fail("cannot write the output file");
    }
}

__attribute__((noinline)) void vmcu_mark(int region)
{
    (void)region;
}

void vmcu_exit(int status)
{
    if (output_file != NULL) {
        FILE *f = output_file;
        output_file = NULL;
        if (fclose(f) != 0) {
            vmcu_fail("cannot close the output file");
        }
    }
    exit(status);
}

void vmcu_fail(const char *msg)
{
    fprintf(stderr, "vmcu: fail: %s\n", msg);
    vmcu_exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUT OUTPUT\n", argc > 0 ? argv[0] : "program");
        return 1;
    }
    input_path = argv[1];
    output_file = fopen(argv[2], "wb");
    if (output_file == NULL) {
        vmcu_fail("cannot create the output file");
    }
    vmcu_exit(vmcu_main());
}
