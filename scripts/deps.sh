#!/usr/bin/env bash
# Installs what building and running pushbridge (and its tour) need on Debian 12, only when
# something is missing (so a second run is instant). Needs root or sudo.
# (tests/run.sh installs the test tools itself.)
set -euo pipefail
# kcat is for the README tour (producing to the embedded Kafka).
# libev-dev and libwebsockets-evlib-ev: the epoll event loop lws runs on.
pkgs=(build-essential cmake pkg-config librdkafka-dev libwebsockets-dev libyajl-dev libssl-dev
      libev-dev libwebsockets-evlib-ev kcat)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
