/* The broker's own request-response rate: the floor for bench/controller-load.
 *
 *   bench_broker_rtt PORT AGENTS REQ_BYTES RESP_BYTES QOS SECONDS [WINDOW]
 *
 * One process holds AGENTS echo clients, each subscribed to its own topic
 * "usp/flr/agent/os::012345-SIMnnnnnn" like the fleet's agents, and one
 * driver subscribed to "usp/flr/controller/uspsim-controller". The driver publishes
 * REQ_BYTES to the agents' topics in turn, with the MQTT 5 properties
 * uspsim sends (Response Topic, Content Type), keeping WINDOW requests in
 * flight (default 256); each echo client publishes RESP_BYTES back to the
 * Response Topic. Every client is plain libmosquitto on an epoll loop,
 * reading one packet per readiness event as uspsim's binding does, with no
 * USP work at all. The driver has a process of its own, as the controller
 * does, and the echo clients are split over processes as `uspsim agents
 * --workers auto` splits agents (one, or one per core from 2,000 on).
 * After a one-second warm-up it counts round trips for SECONDS and prints
 * one JSON line:
 *   {"round_trips_per_s":N,"agents":A,"req_bytes":R,"resp_bytes":S,"qos":Q,"window":W}
 * Exit status 0, or 1 (reported on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Topics as long as the fleet's, under their own prefix. */
#define DRIVER_TOPIC "usp/flr/controller/uspsim-controller"
#define BATCH        100 /* connects in flight: below mosquitto's listen backlog */

/* libmosquitto 2.0 opens a socketpair per client only to wake a threaded
 * loop; this program never uses one, and 3 descriptors per client would
 * not fit 10,000 clients in the open-files limit. It copes without. */
int socketpair(int domain, int type, int protocol, int sv[2])
{
    errno = EMFILE;
    return -1;
}

struct client {
    struct mosquitto *m;
    int fd;
    uint32_t events;
    bool up;
    int index; /* -1: the driver */
    char topic[64];
};

static int ep;
static struct client *clients;
static struct client driver;
static int nagents, req_bytes, resp_bytes, qos, window;
static int first, last; /* the echo clients of this process: [first, last) */
static uint8_t *req_buf, *resp_buf;
static uint64_t sent, received, next_agent;
static bool counting;
static uint64_t counted;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_broker_rtt: %s: %s\n", what,
            rc ? mosquitto_strerror(rc) : strerror(errno));
    exit(1);
}

static void watch(struct client *c)
{
    uint32_t ev = EPOLLIN | (mosquitto_want_write(c->m) ? EPOLLOUT : 0);
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, c->fd >= 0 && c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) != 0)
        die("epoll_ctl", 0);
    c->events = ev;
}

static void publish(struct client *c, const char *topic, const uint8_t *buf, int len,
                    bool with_reply)
{
    mosquitto_property *props = NULL;
    if (with_reply)
        mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, DRIVER_TOPIC);
    else
        mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, c->topic);
    mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, "usp.msg");
    int rc = mosquitto_publish_v5(c->m, NULL, topic, len, buf, qos, false, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS)
        die("publish", rc);
}

static void send_request(void)
{
    struct client *a = &clients[next_agent++ % (uint64_t)nagents];
    publish(&driver, a->topic, req_buf, req_bytes, true);
    sent++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct client *c = obj;
    if (c->index < 0) {
        received++;
        if (counting)
            counted++;
        send_request();
        return;
    }
    char *reply = NULL;
    mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &reply, false);
    publish(c, reply ? reply : DRIVER_TOPIC, resp_buf, resp_bytes, false);
    free(reply);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    ((struct client *)obj)->up = true;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct client *c = obj;
    if (rc)
        die("CONNACK", rc);
    int r = mosquitto_subscribe_v5(m, NULL, c->topic, qos, 0, NULL);
    if (r)
        die("subscribe", r);
}

static void service(struct client *c, uint32_t events)
{
    int rc = MOSQ_ERR_SUCCESS;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        rc = mosquitto_loop_read(c->m, 1);
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(c->m))
        rc = mosquitto_loop_write(c->m, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        die("connection", rc);
    watch(c);
}

static void run_for(uint64_t ns, bool (*until)(void))
{
    struct epoll_event evs[256];
    uint64_t end = now_ns() + ns, last_misc = now_ns();
    while ((!until || !until()) && now_ns() < end) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++)
            service(evs[i].data.ptr, evs[i].events);
        if (now_ns() - last_misc > 1000000000u) {
            last_misc = now_ns();
            if (driver.m)
                mosquitto_loop_misc(driver.m);
            for (int i = first; i < last; i++)
                if (clients[i].m)
                    mosquitto_loop_misc(clients[i].m);
        }
    }
}

static int batch_lo, batch_hi;
static bool batch_up(void)
{
    for (int i = batch_lo; i < batch_hi; i++)
        if (!clients[i].up)
            return false;
    return true;
}
static bool driver_up(void)
{
    return driver.up;
}

static void start(struct client *c, int port)
{
    c->m = mosquitto_new(NULL, true, c);
    if (!c->m)
        die("mosquitto_new", 0);
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1); /* as uspsim's binding */
    mosquitto_message_v5_callback_set(c->m, on_message);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    int rc = mosquitto_connect_bind_v5(c->m, "127.0.0.1", port, 60, NULL, NULL);
    if (rc)
        die("connect", rc);
    c->fd = mosquitto_socket(c->m);
    c->events = 0;
    watch(c);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bench_broker_rtt PORT AGENTS REQ_BYTES RESP_BYTES QOS SECONDS "
                        "[WINDOW]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    nagents = atoi(argv[2]);
    req_bytes = atoi(argv[3]);
    resp_bytes = atoi(argv[4]);
    qos = atoi(argv[5]);
    double secs = atof(argv[6]);
    window = argc > 7 ? atoi(argv[7]) : 256;
    if (port <= 0 || nagents <= 0 || req_bytes <= 0 || resp_bytes <= 0 || qos < 0 || qos > 1 ||
        secs <= 0 || window <= 0) {
        fprintf(stderr, "bench_broker_rtt: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    mosquitto_lib_init();
    clients = calloc((size_t)nagents, sizeof *clients);
    req_buf = calloc(1, (size_t)req_bytes);
    resp_buf = calloc(1, (size_t)resp_bytes);
    if (!clients || !req_buf || !resp_buf)
        die("set-up", 0);
    memset(req_buf, 'q', (size_t)req_bytes);
    memset(resp_buf, 'r', (size_t)resp_bytes);
    for (int i = 0; i < nagents; i++) {
        clients[i].index = i;
        snprintf(clients[i].topic, sizeof clients[i].topic, "usp/flr/agent/os::012345-SIM%06d",
                 i + 1);
    }

    /* The echo processes: each connects its share, says so, and serves. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nproc = nagents >= 2000 && ncpu > 1 ? (int)ncpu : 1;
    pid_t kids[64];
    int ready[2];
    if (nproc > 64)
        nproc = 64;
    if (pipe(ready) != 0)
        die("pipe", 0);
    for (int k = 0; k < nproc; k++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork", 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(ready[0]);
            first = (int)((long)nagents * k / nproc);
            last = (int)((long)nagents * (k + 1) / nproc);
            ep = epoll_create1(EPOLL_CLOEXEC);
            if (ep < 0)
                die("epoll", 0);
            for (int lo = first; lo < last; lo += BATCH) {
                int hi = lo + BATCH < last ? lo + BATCH : last;
                for (int i = lo; i < hi; i++)
                    start(&clients[i], port);
                batch_lo = lo;
                batch_hi = hi;
                run_for(30000000000u, batch_up);
                if (!batch_up())
                    die("echo clients did not come up", 0);
            }
            if (write(ready[1], "r", 1) != 1)
                die("pipe", 0);
            for (;;)
                run_for(3600000000000u, NULL);
        }
        kids[k] = pid;
    }
    close(ready[1]);
    for (int k = 0; k < nproc; k++) {
        char c;
        if (read(ready[0], &c, 1) != 1) {
            fprintf(stderr, "bench_broker_rtt: an echo process failed\n");
            for (int j = 0; j < nproc; j++)
                kill(kids[j], SIGKILL);
            return 1;
        }
    }

    /* The driver. */
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll", 0);
    driver.index = -1;
    snprintf(driver.topic, sizeof driver.topic, "%s", DRIVER_TOPIC);
    start(&driver, port);
    run_for(10000000000u, driver_up);
    if (!driver.up)
        die("the driver did not come up", 0);
    for (int i = 0; i < window; i++)
        send_request();
    watch(&driver);
    run_for(1000000000u, NULL); /* warm-up */
    counting = true;
    uint64_t t0 = now_ns();
    run_for((uint64_t)(secs * 1e9), NULL);
    double dt = (double)(now_ns() - t0) / 1e9;
    printf("{\"round_trips_per_s\":%.1f,\"agents\":%d,\"req_bytes\":%d,\"resp_bytes\":%d,"
           "\"qos\":%d,\"window\":%d,\"echo_processes\":%d}\n",
           (double)counted / dt, nagents, req_bytes, resp_bytes, qos, window, nproc);
    fflush(stdout);
    for (int k = 0; k < nproc; k++)
        kill(kids[k], SIGKILL);
    for (int k = 0; k < nproc; k++)
        waitpid(kids[k], NULL, 0);
    return 0;
}
