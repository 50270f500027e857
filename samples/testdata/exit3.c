/* Test guest: a WASI preview-1 command module that prints a line to stderr and exits with code 3. */
#include <stdio.h>

int main(void) {
    fputs("exit3: exiting with code 3\n", stderr);
    return 3;
}
