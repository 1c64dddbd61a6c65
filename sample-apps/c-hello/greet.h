#include <stddef.h>

/* Writes "GREETING, WHO!" into out (at most size bytes); GREETING defaults to "Hello". */
void greet(char *out, size_t size, const char *greeting, const char *who);
