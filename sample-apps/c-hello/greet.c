#include <stdio.h>

#include "greet.h"

void greet(char *out, size_t size, const char *greeting, const char *who) {
    snprintf(out, size, "%s, %s!", greeting && *greeting ? greeting : "Hello", who);
}
