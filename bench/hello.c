/*
 * hello.c: the baseline of the benchmarks (bench/run.sh). A hello-world
 * HTTP server on the libmicrohttpd configuration tokend's src/http/http.c
 * uses with the default settings: the same flags (epoll, an internal
 * thread pool, ITC, error log), 2 threads, 1024 connections, 256 per
 * address, a 30 s idle timeout, 32 KiB of memory per connection, a socket
 * it binds and listens on itself (backlog 1024) and hands over. Every GET
 * is answered 200 with {"status":"ok"} from one response made at start,
 * queued on the access handler's second call as tokend does (queuing on
 * the first breaks keep-alive). So the ratio tokend/hello is what tokend
 * costs over libmicrohttpd and the kernel on the same machine and minute.
 *
 *   build/bench-hello [threads]    prints "hello: listening on port N"
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char BODY[] = "{\"status\":\"ok\"}";
static struct MHD_Response *reply;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static int marker;
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(c, MHD_HTTP_OK, reply);
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 2;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "hello: threads must be 1..64\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("hello: listen");
        return 1;
    }
    reply = MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
    if (!reply || MHD_add_response_header(reply, "Content-Type", "application/json") != MHD_YES) {
        fprintf(stderr, "hello: cannot make the response\n");
        return 1;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "hello: MHD_start_daemon failed\n");
        return 1;
    }
    printf("hello: listening on port %d\n", (int)ntohs(sa.sin_port));
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    while (!stop) pause();
    MHD_stop_daemon(d);
    MHD_destroy_response(reply);
    close(fd);
    return 0;
}
