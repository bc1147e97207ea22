#!/bin/sh
# Demo producer for deploy/compose.yaml: progress events for a few tasks of a
# few users, keyed by user ID, forever. Runs in the apache/kafka image (a
# POSIX sh, the Kafka CLI tools); one console producer reads every line, so
# the JVM starts once. Line format: KEY|VALUE (parse.key, key.separator=|).
set -eu
BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
TOPIC="${TOPIC:-pushbridge.events}"
USERS="${USERS:-alice bob}"
TASKS="${TASKS:-job-1 job-2 job-3}"
STEP_SECONDS="${STEP_SECONDS:-1}"

events() {
    round=0
    while :; do
        round=$((round + 1))
        for p in 0 20 40 60 80 100; do
            for user in $USERS; do
                for task in $TASKS; do
                    final=false
                    msg="step $p% of round $round"
                    if [ "$p" = 100 ]; then final=true; msg="done (round $round)"; fi
                    printf '%s|{"event":"task.progress","task":"%s","final":%s,"data":{"progress":%s,"message":"%s"}}\n' \
                        "$user" "$task" "$final" "$p" "$msg"
                done
            done
            sleep "$STEP_SECONDS"
        done
    done
}

events | /opt/kafka/bin/kafka-console-producer.sh --bootstrap-server "$BOOTSTRAP" \
    --topic "$TOPIC" --property parse.key=true --property key.separator='|'
