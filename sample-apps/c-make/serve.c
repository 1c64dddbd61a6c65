/* The web program of the c-make sample: answers every connection on the dyno's listener (fd 4) with one line
 * and closes it. Its accept() is what makes the C buildpack declare it the `web` process type. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
                        "Connection: close\r\n\r\nmade by make\n";
    /* The listener comes non-blocking (as Go's runtime wants it): this program blocks in accept(). */
    fcntl(4, F_SETFL, fcntl(4, F_GETFL) & ~O_NONBLOCK);
    for (;;) {
        int conn = accept(4, NULL, NULL);
        if (conn < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (conn < 0) return 0; /* the listener closed: the dyno is stopping */
        char request[4096];
        (void)read(conn, request, sizeof request);
        (void)write(conn, reply, strlen(reply));
        close(conn);
    }
}
