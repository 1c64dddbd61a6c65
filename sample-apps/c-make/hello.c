// A command of the c-make sample: `wasmdyno run --dir sample-apps/c-make hello NAME`.
#include <stdio.h>

int main(int argc, char **argv) {
    printf("Hello, %s, from C built by make for wasm32-wasi.\n", argc > 1 ? argv[1] : "world");
    return 0;
}
