#!/bin/bash
# One-shot set-up of a fresh Debian 12 machine (as root) for ccrollout:
# apt packages, libbpf/bpftool from bookworm-backports, and a virtual
# environment with the package installed. Fast when nothing is missing.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$here/.venv}"

apt_packages=(
    clang llvm make git
    openssh-server openssh-client
    iproute2 nftables iperf3 procps util-linux psmisc
    python3 python3-venv python3-bpfcc bpfcc-tools systemd
    linux-headers-amd64
    prometheus prometheus-node-exporter
)
backports_packages=(libbpf1 libbpf-dev bpftool)
backports_file=/etc/apt/sources.list.d/ccrollout-bookworm-backports.sources

missing=()
for pkg in "${apt_packages[@]}" "${backports_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
# Debian 12's own libbpf (1.1) cannot create struct_ops links: insist on >= 1.2.
libbpf_version="$(dpkg-query -W -f='${Version}' libbpf1 2>/dev/null || true)"
if [ -n "$libbpf_version" ] && dpkg --compare-versions "$libbpf_version" lt 1:1.2; then
    missing+=(libbpf1)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    if [ ! -e "$backports_file" ]; then
        # Same mirror and keyring as the machine's own main Debian source.
        uris="$(awk '/^URIs:/ {u=$2} /^Suites:.*bookworm( |$)/ {print u; exit}' \
            /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
        keyring="$(awk '/^Signed-By:/ {print $2; exit}' \
            /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
        if [ -z "$uris" ]; then
            uris="$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)"
        fi
        keyring="${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
            "$uris" "$keyring" > "$backports_file"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    apt-get install -y -qq --no-install-recommends -t bookworm-backports \
        "${backports_packages[@]}" >/dev/null
fi

# The lab starts its own node_exporters and Prometheus (ccrollout/lab/monitoring.py). The
# packages' services would hold ports 9090 and 9100 and scrape this machine: keep them off.
for service in prometheus prometheus-node-exporter; do
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$service" ]; then
        "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
done

# The venv sees the system site-packages so that bcc (python3-bpfcc) imports.
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
stamp="$venv/.ccrollout-installed"
if [ ! -e "$stamp" ] || [ "$here/setup.cfg" -nt "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/pip" install -q -e "$here[test]"
    touch "$stamp"
fi
