#!/usr/bin/env bash
# What the tests need beyond npm, shared by `npm test` and .ci/run: installed from Debian's
# packages when missing and this is root with apt-get (a fresh machine of CI's kind), otherwise
# named in one line with the command that installs it, before any test runs.
#
# ps (procps), script (bsdutils: a pseudo-terminal), getent (libc-bin), python3 (the Python
# exec server); Go (golang-go) builds the Go exec server (docs/examples/go); a real Prometheus
# with promtool (prometheus) for the metrics tests; ansible-playbook (ansible-core) and an sshd
# (openssh-server) for the fleet tests, which start their own sshd on loopback; Gunicorn,
# Uvicorn and Puma (with ruby-sd-notify, for its READY=1) for the servers no one here wrote;
# crun, a real OCI runtime, and unshare/nsenter (util-linux) for prefork as a container's PID 1;
# tmux (a terminal to drive `prefork top` in) and chromium (a real browser for the live page,
# driven by playwright-core) for the live-view test.
set -euo pipefail
# A second Node line (the active LTS, 26) for the test that moves a master between Node majors:
# from the npm registry, like everything npm installs.
bash "$(dirname "$0")/node-line.sh" 26 >/dev/null
plain=() # installed with their recommends
lean=()  # installed without them (prometheus would add node_exporter and more)
command -v ps >/dev/null || plain+=(procps)
command -v script >/dev/null || plain+=(bsdutils)
command -v getent >/dev/null || plain+=(libc-bin)
command -v python3 >/dev/null || plain+=(python3)
command -v go >/dev/null || plain+=(golang-go)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || lean+=(prometheus)
command -v ansible-playbook >/dev/null || lean+=(ansible-core)
[ -x /usr/sbin/sshd ] || lean+=(openssh-server)
command -v gunicorn >/dev/null || lean+=(gunicorn)
/usr/bin/python3 -c 'import uvicorn' 2>/dev/null || lean+=(python3-uvicorn)
command -v puma >/dev/null || lean+=(puma)
command -v crun >/dev/null || lean+=(crun)
{ command -v unshare >/dev/null && command -v nsenter >/dev/null; } || plain+=(util-linux)
ruby -e 'require "sd_notify"' 2>/dev/null || lean+=(ruby-sd-notify)
command -v tmux >/dev/null || lean+=(tmux)
[ -x /usr/bin/chromium ] || lean+=(chromium)
missing=("${plain[@]}" "${lean[@]}")
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "prefork tests: missing ${missing[*]}: install them first with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "prefork tests: installing ${missing[*]} (Debian packages the tests need)" >&2
apt-get update -qq
if [ "${#plain[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${plain[@]}"
fi
if [ "${#lean[@]}" -gt 0 ]; then
  # openssh-server would start a system sshd, which the tests do not use: blocked for the
  # install by a temporary policy-rc.d (an existing one is left as it was).
  own_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}"
  if [ "$own_policy" = true ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
