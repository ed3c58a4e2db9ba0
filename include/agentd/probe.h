/*
 * probe.h — `agentd probe live|ready`: a minimal HTTP client that checks a
 * running agentd's /health/live or /health/ready, for exec probes and
 * container HEALTHCHECKs in images that ship no curl or wget.
 *
 * Usage: agentd probe live|ready [--url URL] [--timeout-ms N]
 *   URL         base URL of the daemon (http or https, no path needed);
 *               default from AGENTD_LISTEN, with 0.0.0.0 / :: / an empty host
 *               replaced by 127.0.0.1, and 127.0.0.1:8080 when unset.
 *   --timeout-ms  whole request, connect included: 1..600000 (2000).
 * Exit status: 0 on HTTP 200, 1 on anything else (connection failure,
 * timeout, other status), 2 on a usage error; on failure one short line
 * goes to stderr; --help prints the usage to stdout and exits 0. Proxy
 * variables are ignored: the daemon is local.
 *
 * Runs on the main thread of its own short-lived process, before any other
 * thread exists; it blocks on the network. It keeps nothing: argv is only
 * read, and everything it allocates is freed before it returns.
 */
#ifndef AGENTD_PROBE_H
#define AGENTD_PROBE_H

#define PROBE_EXIT_OK    0
#define PROBE_EXIT_FAIL  1
#define PROBE_EXIT_USAGE 2

/*
 * Runs the probe. argv[0] is the subcommand's own name ("probe") and
 * argv[1..argc-1] its arguments, so main() can pass (argc - 1, argv + 1).
 * Reads AGENTD_LISTEN; calls curl_global_init()/curl_global_cleanup(), so
 * it must run before any other thread uses libcurl (main() hands over to it
 * first thing). Returns the exit status above.
 */
int probe_main(int argc, char **argv);

#endif
