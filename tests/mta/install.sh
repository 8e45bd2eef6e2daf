#!/usr/bin/env bash
# Install Postfix (with smtp-sink) and Dovecot for the Postfix test suite, without
# starting any daemon. Needs root; does nothing when everything is already there.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v postfix >/dev/null 2>&1 || missing+=(postfix)
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-core)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "tests/mta/install.sh: not root; Postfix tests will be skipped (need: ${missing[*]})" >&2
    exit 0
fi
# "No configuration": the package writes no main.cf and starts nothing.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# Keep apt from starting daemons (dovecot-core would); leave an existing policy alone.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
