"""The text files the image builder puts into the initramfs: ``/init``, the udhcpc hook, /etc.

``/init`` is a busybox ``sh`` script (PID 1). It reads its options from ``/proc/cmdline``
(the kernel keeps dotted ``pyv86.*`` options out of init's argv and environment), brings up
the network, optionally runs a user script, prints :data:`READY_MARKER` on a line of its own
and starts a job-control shell on the console. ``docs/guest-images.md`` documents the options.
"""
from __future__ import annotations

import hashlib

READY_MARKER = "PYV86-READY"
"""Printed by /init on the console right before the interactive shell starts."""

SCRIPT_EXIT_PREFIX = "PYV86-SCRIPT-EXIT"
"""``PYV86-SCRIPT-EXIT <status>`` follows the output of a ``pyv86.script``."""

NET_PREFIX = "pyv86-init: net"
"""``pyv86-init: net <iface> <addr/prefix> <how> ...`` reports the network setup."""

DEFAULT_STATIC_IP = "10.0.2.15/24"
DEFAULT_STATIC_GW = "10.0.2.2"
DEFAULT_SCRIPT_PATH = "/etc/pyv86/startup.sh"
MODULES = ("8390", "ne2k-pci")
"""Kernel modules /init loads, in this order (8390 is the core ne2k-pci needs)."""

INIT = r"""#!/bin/sh
# /init of a pyv86 guest image (written by `pyv86 guest build`; see docs/guest-images.md).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
umask 022
say() { echo "pyv86-init: $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || say "devtmpfs not available; /dev is static"
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run

# Options: dotted kernel parameters only show up in /proc/cmdline.
ip_static=@DEFAULT_STATIC_IP@
gw=
gw_set=
dns=
dhcp=3
net=1
iface=eth0
script=
after=shell
onexit=respawn
quiet=1
host=pyv86
set -f
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pyv86.ip=*) ip_static="${arg#*=}" ;;
        pyv86.gw=*) gw="${arg#*=}"; gw_set=1 ;;
        pyv86.dns=*) dns="${arg#*=}" ;;
        pyv86.dhcp=*) dhcp="${arg#*=}" ;;
        pyv86.net=*) net="${arg#*=}" ;;
        pyv86.iface=*) iface="${arg#*=}" ;;
        pyv86.script=*) script="${arg#*=}" ;;
        pyv86.after=*) after="${arg#*=}" ;;
        pyv86.onexit=*) onexit="${arg#*=}" ;;
        pyv86.quiet=*) quiet="${arg#*=}" ;;
        pyv86.hostname=*) host="${arg#*=}" ;;
    esac
done
set +f
case "$ip_static" in */*) ;; *) ip_static="$ip_static/24" ;; esac
if [ -z "$gw_set" ] && [ "$ip_static" = "@DEFAULT_STATIC_IP@" ]; then gw=@DEFAULT_STATIC_GW@; fi
case "$dhcp" in ''|*[!0-9]*) say "pyv86.dhcp=$dhcp is not a number; using 3"; dhcp=3 ;; esac

hostname "$host"
echo "$host" > /etc/hostname
say "kernel $(uname -r) $(uname -m), busybox init script"

ip link set lo up
if [ "$net" != 0 ]; then
    for m in @MODULES@; do
        ko=/lib/modules/$(uname -r)/$m.ko
        if [ -f "$ko" ]; then
            insmod "$ko" || say "insmod $m failed"
        fi
    done
    if [ -e "/sys/class/net/$iface" ]; then
        ip link set "$iface" up
        how=
        if [ "$dhcp" -gt 0 ]; then
            if udhcpc -i "$iface" -s /usr/share/udhcpc/default.script -f -q -n -t "$dhcp" -T 1 \
                    -x "hostname:$host" >/run/udhcpc.log 2>&1; then
                how=dhcp
            fi
        fi
        if [ -z "$how" ]; then
            ip addr add "$ip_static" dev "$iface"
            if [ -n "$gw" ]; then ip route add default via "$gw" dev "$iface"; fi
            if [ -n "$dns" ]; then echo "nameserver $dns" > /etc/resolv.conf; fi
            how=static
        fi
        addr=$(ip -4 -o addr show dev "$iface" | awk '{print $4; exit}')
        route=$(ip route | awk '$1 == "default" {print $3; exit}')
        mac=$(cat "/sys/class/net/$iface/address")
        echo "@NET_PREFIX@ $iface ${addr:-none} $how gw=${route:-none} mac=$mac"
    else
        say "no $iface: the NIC driver found no device; networking is off"
    fi
fi

if [ -z "$script" ] && [ -f @DEFAULT_SCRIPT_PATH@ ]; then script=@DEFAULT_SCRIPT_PATH@; fi
if [ -n "$script" ]; then
    if [ -f "$script" ]; then
        say "running $script"
        sh "$script"
        echo "@SCRIPT_EXIT_PREFIX@ $?"
    else
        say "pyv86.script=$script: no such file in the initramfs"
        echo "@SCRIPT_EXIT_PREFIX@ 127"
    fi
fi

finish() {
    case "$1" in
        poweroff) say "powering off"; sync; poweroff -f ;;
        reboot) say "rebooting"; sync; reboot -f ;;
        halt) say "halting"; sync; halt -f ;;
    esac
}
finish "$after"

if [ "$quiet" != 0 ]; then dmesg -n 1; fi
say "ready after $(cut -d' ' -f1 /proc/uptime) s of guest uptime"
while :; do
    echo
    echo "@READY_MARKER@"
    setsid cttyhack sh -l
    case "$onexit" in
        poweroff|reboot|halt) finish "$onexit" ;;
    esac
    say "shell exited; starting a new one"
done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook of a pyv86 guest image: applies what the DHCP server offered.
# Called as `default.script deconfig|bound|renew|leasefail|nak` with the lease in the environment.
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
        if [ -n "$router" ]; then
            while ip route del default dev "$interface" 2>/dev/null; do :; done
            for r in $router; do
                ip route add default via "$r" dev "$interface" && break
            done
        fi
        : > /etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        echo "ip=$ip/${mask:-24} router=${router%% *} server=$serverid lease=$lease" > /run/dhcp-lease
        ;;
esac
exit 0
"""

PROFILE = r"""# /etc/profile of a pyv86 guest image
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
export PS1='\h:\w\$ '
export TERM="${TERM:-vt100}"
cd "$HOME" 2>/dev/null
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\tpyv86\n::1\tlocalhost ip6-localhost ip6-loopback\n"
HOSTNAME = "pyv86\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def init_script() -> str:
    """``/init`` with the constants of this module filled in."""
    text = INIT
    for key, value in {
        "@DEFAULT_STATIC_IP@": DEFAULT_STATIC_IP, "@DEFAULT_STATIC_GW@": DEFAULT_STATIC_GW,
        "@MODULES@": " ".join(MODULES), "@NET_PREFIX@": NET_PREFIX,
        "@DEFAULT_SCRIPT_PATH@": DEFAULT_SCRIPT_PATH, "@SCRIPT_EXIT_PREFIX@": SCRIPT_EXIT_PREFIX,
        "@READY_MARKER@": READY_MARKER,
    }.items():
        text = text.replace(key, value)
    assert "@" not in text.replace("$@", ""), "unreplaced placeholder in /init"
    return text


def fingerprint() -> str:
    """A hash of every text file above: a cached image built from other text is rebuilt."""
    h = hashlib.sha256()
    for text in (init_script(), UDHCPC_SCRIPT, PROFILE, PASSWD, GROUP, HOSTS, HOSTNAME, NSSWITCH):
        h.update(text.encode() + b"\0")
    return h.hexdigest()[:16]
