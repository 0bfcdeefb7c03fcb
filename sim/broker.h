/* The embedded broker: a real mosquitto started as a child process on a free
 * loopback port, for runs without --broker, the demo and the tests. */
#ifndef SIM_BROKER_H
#define SIM_BROKER_H

#include <stddef.h>
#include <sys/types.h>

struct sim_broker {
    pid_t pid;      /* 0 when not running */
    int port;
    char dir[256];  /* private folder: config and log */
    char url[64];   /* "mqtt://127.0.0.1:PORT" */
};

/* Starts mosquitto on 127.0.0.1 and a free port and waits until it accepts
 * connections (at most `wait_ms`). 0, or -1 with a sentence in `err` (the
 * binary is missing, it exited — with the tail of its log —, or it did not
 * accept in time). */
int sim_broker_start(struct sim_broker *b, unsigned wait_ms, char *err, size_t errlen);
/* Stops it (SIGTERM, then SIGKILL after a second) and removes its folder. */
void sim_broker_stop(struct sim_broker *b);
/* A free TCP port on 127.0.0.1 (bound and released), or -1. */
int sim_free_port(void);
/* Whether something accepts TCP connections on 127.0.0.1:port now. */
int sim_port_accepts(int port);

#endif
