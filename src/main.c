/* pushbridge: Kafka -> WebSocket push bridge. main() reads the command line
 * and the configuration, then hands over to the server; it is the only place
 * that decides exit codes (0 ok, 1 start-up failure, 2 bad configuration). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pushbridge/hub/auth.h"
#include "pushbridge/core/config.h"
#include "pushbridge/kafka/kafka.h"
#include "pushbridge/core/log.h"
#include "pushbridge/public/server.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pushbridge [-c FILE] [--dev] [--check-config] [--log-level LEVEL]\n"
            "\n"
            "Consumes Kafka topics keyed by user ID and pushes each event to every\n"
            "WebSocket connection of that user.\n"
            "\n"
            "  -c, --config FILE     JSON configuration file\n"
            "      --dev             embedded Kafka, auth.mode none, any origin\n"
            "      --check-config    validate the configuration, print it, exit\n"
            "      --log-level LEVEL debug, info, warn or error\n"
            "      --print-settings  print the settings table (Markdown) and exit\n"
            "      --print-man       print the man page pushbridge(8) (roff) and exit\n"
            "      --version         print the version and exit\n"
            "  -h, --help            this text\n"
            "\n"
            "Every setting can also be set as PUSHBRIDGE_<SECTION>_<KEY>, which wins\n"
            "over the file (e.g. PUSHBRIDGE_LISTEN_PUBLIC=127.0.0.1:9000).\n");
}

struct args {
    const char *config;
    const char *log_level;
    int dev;
    int check;
};

/* Returns -1 to exit 0 (help, version), 0 to go on, 2 on a usage error. */
static int parse_args(int argc, char **argv, struct args *a)
{
    enum { OPT_DEV = 256, OPT_CHECK, OPT_LEVEL, OPT_VERSION, OPT_SETTINGS, OPT_MAN };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"dev", no_argument, NULL, OPT_DEV},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"log-level", required_argument, NULL, OPT_LEVEL},
        {"version", no_argument, NULL, OPT_VERSION},
        {"print-settings", no_argument, NULL, OPT_SETTINGS},
        {"print-man", no_argument, NULL, OPT_MAN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a->config = optarg; break;
        case OPT_DEV: a->dev = 1; break;
        case OPT_CHECK: a->check = 1; break;
        case OPT_LEVEL: a->log_level = optarg; break;
        case OPT_VERSION: printf("pushbridge %s\n", PB_VERSION); return -1;
        case OPT_SETTINGS: pb_config_print_table(stdout); return -1;
        case OPT_MAN: pb_config_print_man(stdout, PB_VERSION); return -1;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pushbridge: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

static int load_config(const struct args *a, struct pb_config *cfg, char *err, size_t errlen)
{
    if (pb_config_init(cfg)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cfg->dev = a->dev;
    if (a->dev)
        pb_config_apply_dev(cfg);
    if (a->config && pb_config_load_file(cfg, a->config, err, errlen))
        return -1;
    if (pb_config_apply_env(cfg, environ, err, errlen))
        return -1;
    if (a->log_level && pb_config_set(cfg, "log.level", a->log_level, err, errlen))
        return -1;
    if (pb_config_add_input_topics(cfg, err, errlen) || pb_config_validate(cfg, err, errlen))
        return -1;
    if (pb_kafka_check_properties(cfg, err, errlen))
        return -1;
    /* Key files are configuration too: --check-config loads them. */
    struct pb_auth *auth = pb_auth_new(cfg, err, errlen);
    if (!auth)
        return -1;
    pb_auth_free(auth);
    return 0;
}

/* Each connection is a descriptor: take the whole hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    rlim_t soft = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl))
        pb_warn("cannot raise the open-file limit: %s", strerror(errno));
    pb_info("open-file limit: soft %llu -> %llu (hard %llu)", (unsigned long long)soft,
            (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

int main(int argc, char **argv)
{
    struct args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;

    char err[512] = "";
    struct pb_config cfg;
    if (load_config(&a, &cfg, err, sizeof(err))) {
        fprintf(stderr, "pushbridge: configuration error: %s\n", err);
        pb_config_free(&cfg);
        return 2;
    }
    if (a.check) {
        pb_config_dump(&cfg, stdout);
        fprintf(stderr, "pushbridge: configuration OK\n");
        pb_config_free(&cfg);
        return 0;
    }
    if (pb_log_init(cfg.log_level, cfg.log_format, cfg.log_file, err, sizeof(err))) {
        fprintf(stderr, "pushbridge: %s\n", err);
        pb_config_free(&cfg);
        return 2;
    }
    pb_info("pushbridge %s starting%s", PB_VERSION, cfg.dev ? " in --dev mode" : "");
    if (cfg.auth_mode == PB_AUTH_NONE)
        pb_warn("auth.mode is none: clients are trusted to say which user they are");
    if (!cfg.push_api_keys.n && pb_config_internal_exposed(&cfg))
        pb_warn("push.api_keys is empty and the internal listener (listen.internal %s) is not "
                "on loopback%s: anyone who reaches it can push to any user; set push.api_keys "
                "or keep it on 127.0.0.1",
                cfg.listen_internal,
                strcmp(cfg.listen_internal, cfg.listen_public) == 0 ? " (it is the public port)"
                                                                    : "");
    raise_fd_limit();

    struct pb_server srv;
    rc = 0;
    if (pb_server_init(&srv, &cfg, err, sizeof(err))) {
        pb_error("cannot start: %s", err);
        rc = 1;
    } else {
        rc = pb_server_run(&srv);
        if (!pb_server_can_free(&srv)) {
            /* The broker is gone and librdkafka would wait for it: leave
             * now, within shutdown_timeout_ms; the OS reclaims the rest. */
            pb_warn("exiting without tearing down the Kafka client");
            pb_log_close();
            fflush(NULL);
            _exit(rc);
        }
    }
    pb_server_free(&srv);
    pb_config_free(&cfg);
    pb_log_close();
    return rc;
}
