// What the launcher did before the Go runtime started; read by launch.go.
#ifndef NSRUN_LAUNCH_H
#define NSRUN_LAUNCH_H

enum { NSRUN_KIND_NONE, NSRUN_KIND_RUN, NSRUN_KIND_UP };

/* The supervisor's parent-death signal: a real-time signal (SIGRTMIN+4 in
 * glibc) that glibc and Go leave alone, whose default action terminates. */
#define NSRUN_LAUNCHER_GONE 38

struct nsrun_launch {
	int kind;      /* NSRUN_KIND_*: what the command line asks for */
	int launched;  /* this process is the run's supervisor */
	int joined;    /* in the gateway's user namespace of nsrun-helper */
	int root;      /* --root: mapped as uid 0 */
	int terminal;  /* stdin is the caller's foreground terminal */
	int uid, gid;  /* the caller's, on the host */
	int nsrun_pid; /* the launcher's pid, as the caller sees it */
	int port_fd;   /* socket to ask the launcher for published ports */
	const char *err_step; /* launching failed at this step ... */
	int err_errno;        /* ... with this errno */
};

extern struct nsrun_launch nsrun_launch_state;

/* Set to 1, before the launcher's constructor runs, by a binary that is
 * not nsrun but can serve as nsrun (a test binary importing nstest): the
 * launcher then acts only when NSRUN_AS_NSRUN is set in the environment. */
extern int nsrun_launch_on_request;
#define NSRUN_AS_NSRUN "NSRUN_AS_NSRUN"

int nsrun_launch_decide(int argc, char **argv, int *root, int *isolated);

#endif
