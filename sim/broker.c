/* The embedded mosquitto (see broker.h). Runs before any loop starts, so the
 * short blocking waits here block nothing else. */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const mosquitto_paths[] = {"/usr/sbin/mosquitto", "/usr/bin/mosquitto",
                                               "/usr/local/sbin/mosquitto", NULL};

int sim_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

int sim_port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *find_mosquitto(void)
{
    const char *env = getenv("USPSIM_MOSQUITTO");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    for (int i = 0; mosquitto_paths[i]; i++)
        if (access(mosquitto_paths[i], X_OK) == 0)
            return mosquitto_paths[i];
    return NULL;
}

/* The last line of the broker's log, for error messages. */
static void log_tail(const char *dir, char *out, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/mosquitto.log", dir);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[160];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0])
            snprintf(out, len, "%.150s", line);
    }
    fclose(f);
}

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"mosquitto.conf", "mosquitto.log", NULL};
    char path[300];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int write_config(const struct sim_broker *b)
{
    char path[300];
    snprintf(path, sizeof path, "%s/mosquitto.conf", b->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "# written by uspsim for its embedded broker\n"
            "listener %d 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 1000000\n" /* one controller gets every Boot! */
            "log_dest file %s/mosquitto.log\n"
            "log_type error\n"
            "log_type warning\n",
            b->port, b->dir);
    return fclose(f) == 0 ? 0 : -1;
}

static int start_once(struct sim_broker *b, const char *bin, unsigned wait_ms, char *err,
                      size_t errlen)
{
    b->port = sim_free_port();
    if (b->port < 0) {
        snprintf(err, errlen, "embedded broker: no free port on 127.0.0.1: %s", strerror(errno));
        return -1;
    }
    if (write_config(b) != 0) {
        snprintf(err, errlen, "embedded broker: cannot write %s/mosquitto.conf: %s", b->dir,
                 strerror(errno));
        return -1;
    }
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "embedded broker: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        setpgid(0, 0); /* a Ctrl-C on our terminal is ours to handle */
        execl(bin, bin, "-c", conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    for (unsigned waited = 0; waited <= wait_ms; waited += 10) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            b->pid = 0;
            char tail[256];
            log_tail(b->dir, tail, sizeof tail);
            snprintf(err, errlen, "embedded broker: %s exited (status %d)%s%s", bin,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                     tail[0] ? ": " : "", tail);
            return -1;
        }
        if (sim_port_accepts(b->port)) {
            snprintf(b->url, sizeof b->url, "mqtt://127.0.0.1:%d", b->port);
            return 0;
        }
        sleep_ms(10);
    }
    snprintf(err, errlen, "embedded broker: %s did not accept on 127.0.0.1:%d within %u ms", bin,
             b->port, wait_ms);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    b->pid = 0;
    return -1;
}

int sim_broker_start(struct sim_broker *b, unsigned wait_ms, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    const char *bin = find_mosquitto();
    if (!bin) {
        snprintf(err, errlen,
                 "embedded broker: no mosquitto binary (install Debian's 'mosquitto' package, "
                 "set USPSIM_MOSQUITTO, or give --broker URL)");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/uspsim-broker-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(b->dir)) {
        snprintf(err, errlen, "embedded broker: cannot create %s: %s", b->dir, strerror(errno));
        return -1;
    }
    /* The port can be taken between our probe and mosquitto's bind: retry. */
    int rc = -1;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++)
        rc = start_once(b, bin, wait_ms, err, errlen);
    if (rc != 0)
        remove_dir(b->dir);
    return rc;
}

void sim_broker_stop(struct sim_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        int status;
        for (int i = 0; i < 100; i++) {
            if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
                b->pid = 0;
                break;
            }
            sleep_ms(10);
        }
        if (b->pid > 0) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, NULL, 0);
            b->pid = 0;
        }
    }
    if (b->dir[0]) {
        remove_dir(b->dir);
        b->dir[0] = 0;
    }
}
