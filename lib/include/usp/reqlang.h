/* The request language: a USP request written as words, e.g.
 *
 *   get --max-depth 2 Device.DeviceInfo.
 *   set Device.WiFi.SSID.1. Enable:=true SSID=home
 *   operate --key k1 Device.IP.Diagnostics.IPPing() Host=192.0.2.1
 *
 * shared by `uspsim encode`, the controller and its interactive shell. The
 * parser builds a Usp__Msg with header.msg_type and msg_id filled in.
 *
 * Commands (`usp_req_usage` prints the full text of each):
 *   get [--max-depth N] PATH...
 *   set [--allow-partial] [--required] [OBJPATH] SETTING...
 *   add [--allow-partial] [--required] OBJPATH [SETTING...] [OBJPATH ...]
 *   delete [--allow-partial] OBJPATH...
 *   operate [--no-resp] [--key K] CMDPATH [ARG=VALUE...]
 *   instances [--first-level] OBJPATH...
 *   gsdm [--first-level] [--no-params] [--no-commands] [--no-events]
 *        [--unique-keys] OBJPATH...
 *   gsp [VERSIONS]
 *   notify-resp SUBID
 *
 * A SETTING is PARAM=VALUE for the last OBJPATH given, or PATH=VALUE with a
 * full parameter path (settings are grouped by their object path). Writing
 * ":=" instead of "=" marks the setting required (PARAM:=VALUE); --required
 * marks them all. The first "=" outside a search expression "[...]" ends
 * the name, so values may contain "=". Options may appear anywhere among the
 * words; "--" ends them. */
#ifndef USP_REQLANG_H
#define USP_REQLANG_H

#include <stddef.h>
#include <stdio.h>

#include "usp-msg-1-4.pb-c.h"
#include "usp/arena.h"
#include "usp/errors.h"

/* Why a request was rejected. */
struct usp_req_err {
    /* Canonical name of the command at fault ("get", ...), a static string;
     * NULL when no command was recognised (empty request, unknown name). */
    const char *cmd;
    /* Index of the word at fault (0 is the command name); -1 when the fault
     * is not one word (e.g. a required argument is missing). */
    int word;
    /* For the line parsers: byte offset in the line of the fault (the word
     * at fault, or the quote or escape that is not finished); else -1. */
    int column;
    /* A sentence naming what is wrong and where, without the command name. */
    char msg[256];
};

/* Builds the request in argv[0..argc-1] (argv[0] the command name, aliases
 * accepted) as a new Msg in `a`; the strings are copied into the arena.
 * `msg_id` must be a non-empty string. Returns 0 with *out set,
 * USP_EINVAL with `err` filled (`err` may be NULL), or USP_ENOMEM. */
int usp_req_parse(struct usp_arena *a, int argc, char **argv, const char *msg_id, Usp__Msg **out,
                  struct usp_req_err *err);

/* Splits one line into words like a POSIX shell would, without expansions:
 * blanks separate words; '...' is literal; "..." is literal except for \"
 * and \\; outside quotes a backslash takes the next character literally
 * (and a backslash-newline joins lines); an unquoted '#' at the start of a
 * word begins a comment that runs to the end of the line. The array and
 * words live in `a`; (*argv)[*argc] is NULL. Returns 0 (possibly with
 * *argc == 0), USP_EINVAL (unfinished quote or escape, `err->column` at
 * the quote or backslash) or USP_ENOMEM. */
int usp_req_split(struct usp_arena *a, const char *line, int *argc, char ***argv,
                  struct usp_req_err *err);

/* usp_req_split, then usp_req_parse. A line with no words (blank or only a
 * comment) gives USP_ENOENT, which an interactive shell may simply skip.
 * `err->column` points at the word at fault. */
int usp_req_parse_line(struct usp_arena *a, const char *line, const char *msg_id, Usp__Msg **out,
                       struct usp_req_err *err);

/* Writes the usage text of command `cmd` (a name or alias) to `f`, or, for
 * cmd NULL, a one-line summary of every command. 0, or USP_ENOENT for an
 * unknown command (nothing is written). */
int usp_req_usage(FILE *f, const char *cmd);

/* The canonical name of the i-th command (0, 1, ...), NULL past the last;
 * for completion and help listings. */
const char *usp_req_command_name(size_t i);

#endif
