/* A C command for wasmdyno: greets its argument (or "world") with $GREETING, says which dyno ran it, and exits
 * with the status given as its second argument. Built by the C buildpack: `hello.wasm`, process type `hello`. */
#include <stdio.h>
#include <stdlib.h>

#include "greet.h"

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    char line[256];
    greet(line, sizeof line, getenv("GREETING"), who);
    const char *dyno = getenv("DYNO");
    printf("%s (%s)\n", line, dyno ? dyno : "no dyno");
    return argc > 2 ? atoi(argv[2]) : 0;
}
