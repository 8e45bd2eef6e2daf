#!/usr/bin/env bash
# Install Postfix (with smtp-sink), Dovecot, OpenDKIM, dnsmasq, Redis and microsocks for
# the tests that run real servers, without starting any daemon. Needs root; does nothing when everything is already there.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v postfix >/dev/null 2>&1 || missing+=(postfix)
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-core)
# The DKIM proof (tests/opendkim/): OpenDKIM as Postfix's verifying milter, dnsmasq
# serving the selector's TXT record on a loopback address.
command -v opendkim >/dev/null 2>&1 || missing+=(opendkim opendkim-tools)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
# The Celery proof (tests/celery/): a real Redis broker and state store.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The proxy recipe (tests/integration/test_proxies.py): a SOCKS5 proxy on loopback.
command -v microsocks >/dev/null 2>&1 || missing+=(microsocks)
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
