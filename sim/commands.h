/* The uspsim subcommands. Each takes argv with argv[0] the command name and
 * returns the process exit status: 0 success, 1 failure, 2 bad usage. */
#ifndef SIM_COMMANDS_H
#define SIM_COMMANDS_H

int sim_cmd_decode(int argc, char **argv);
int sim_cmd_encode(int argc, char **argv);
int sim_cmd_dm(int argc, char **argv);
int sim_cmd_agents(int argc, char **argv);
int sim_cmd_controller(int argc, char **argv);
int sim_cmd_certs(int argc, char **argv);

#endif
