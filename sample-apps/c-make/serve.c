/* A C web app for wasmdyno: accepts connections on the listener the dyno hands it (fd 4, WASMDYNO_LISTEN_FD) and
 * answers each request with the dyno's name and the request line. When the dyno is told to stop, the listener
 * closes, accept() fails, and the program exits. Built by the C buildpack as the `web` process type. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void answer(int conn) {
    char request[8192];
    size_t got = 0;
    while (got < sizeof request - 1) {
        ssize_t n = read(conn, request + got, sizeof request - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        request[got] = '\0';
        if (strstr(request, "\r\n\r\n")) break;
    }
    request[got] = '\0';
    char method[16] = "?", path[1024] = "?";
    sscanf(request, "%15s %1023s", method, path);
    const char *dyno = getenv("DYNO");
    char body[2048];
    int length = snprintf(body, sizeof body, "Hello from C on wasmdyno (%s)\n%s %s\n", dyno ? dyno : "?", method, path);
    char head[256];
    int head_length = snprintf(head, sizeof head,
                               "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                               "Connection: close\r\n\r\n",
                               length);
    write(conn, head, (size_t)head_length);
    write(conn, body, (size_t)length);
}

int main(void) {
    const char *fd_text = getenv("WASMDYNO_LISTEN_FD");
    int listener = fd_text ? atoi(fd_text) : 4;
    /* The listener starts non-blocking; this server takes one connection at a time and may block. */
    fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) & ~O_NONBLOCK);
    printf("listening on fd %d\n", listener);
    fflush(stdout);
    for (;;) {
        int conn = accept(listener, NULL, NULL);
        if (conn < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            printf("the listener closed (%s): exiting\n", strerror(errno));
            return 0;
        }
        answer(conn);
        close(conn);
    }
}
