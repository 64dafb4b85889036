#!/usr/bin/env bash
# Installs the Debian packages a target needs, only when they are missing.
#   ensure-deps.sh python-venv   the venv module (Debian splits it out of python3)
#   ensure-deps.sh venv          nothing yet (placeholder for build deps)
#   ensure-deps.sh demo [ovs]    what `vnet demo` runs as root: ping and iproute2; with ovs, Open
#                                vSwitch (not as root the demo is simulated and needs nothing)
#   ensure-deps.sh test          the peers the tests and benchmarks run against: Open vSwitch
#                                (ovs-ofctl, ovs-vswitchd, ovs-testcontroller), tshark, iperf3,
#                                ping, iproute2 and ethtool (offloads off where a peer needs it),
#                                vsftpd and curl (an FTP server and client for the FTP helper),
#                                traceroute (Debian's, the router hop across subnets),
#                                busybox (udhcpc, the DHCP client of DHCP-addressed workloads),
#                                frr (the BGP speakers of chassis with `bgp`, and the upstream),
#                                etcd-server (the throwaway etcd of the etcd store's tests)
#   ensure-deps.sh bench         the test peers, trafgen (netsniff-ng), the frame generator of
#                                the switch benchmarks, and ab (apache2-utils) against nginx
#                                (nginx-light), the connection-rate load of the ct benchmark
set -euo pipefail

need=()
target="${1:-test}"
case "$target" in
  python-venv) need+=(python3-venv) ;;
  venv) ;;
  demo)
    # not as root, the demo is simulated in-process and runs no program
    [ "$(id -u)" -eq 0 ] || exit 0
    command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    if [ "${2:-vnet}" = ovs ]; then
      command -v ovs-vswitchd >/dev/null 2>&1 || need+=(openvswitch-switch)
      command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
    fi
    ;;
  test|bench)
    command -v ovs-ofctl >/dev/null 2>&1 || need+=(openvswitch-common)
    command -v ovs-vswitchd >/dev/null 2>&1 || need+=(openvswitch-switch)
    command -v ovs-testcontroller >/dev/null 2>&1 || need+=(openvswitch-testcontroller)
    command -v tshark >/dev/null 2>&1 || need+=(tshark)
    command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
    command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
    # the tests run vsftpd with a configuration of their own, in a namespace
    [ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v traceroute >/dev/null 2>&1 || need+=(traceroute)
    # udhcpc, the DHCP client of workloads addressed by DHCP (`addressing: dhcp`)
    command -v busybox >/dev/null 2>&1 || need+=(busybox)
    # FRR (zebra, staticd, bgpd, bfdd, vtysh): the chassis' BGP speakers and the upstream router
    [ -x /usr/lib/frr/bgpd ] || need+=(frr)
    # etcd (3.4): the tests start their own members on loopback ports
    command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
    if [ "$target" = bench ]; then
      command -v trafgen >/dev/null 2>&1 || need+=(netsniff-ng)
      command -v ab >/dev/null 2>&1 || need+=(apache2-utils)
      command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
    fi
    ;;
  *) echo "ensure-deps: unknown target '$target'" >&2; exit 2 ;;
esac

[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "ensure-deps: missing Debian packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
echo "ensure-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# vsftpd's package starts a system-wide server where services start on install (systemd);
# the tests run their own, so one installed here is stopped and left disabled
if [[ " ${need[*]} " == *" vsftpd "* ]] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now vsftpd >/dev/null 2>&1 || true
fi
# so is etcd-server's system-wide etcd (it would hold 2379)
if [[ " ${need[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
