/* Preview-1 command module sample for Skiff in C: greets, prints its args and env var NAME. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *name = getenv("NAME");
    printf("Hello from C on Skiff\n");
    for (int i = 0; i < argc; i++) {
        printf("arg[%d]=%s\n", i, argv[i]);
    }
    printf("NAME=%s\n", name ? name : "(unset)");
    return 0;
}
