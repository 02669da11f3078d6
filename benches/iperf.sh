#!/usr/bin/env bash
# End-to-end benchmark: vswitch against the Linux kernel's own VXLAN device, in the same run.
#
# Usage (as root, from anywhere):
#
#   bash benches/iperf.sh [--rounds N] [--time S] [--no-build] [--only kernel|vswitch]
#                         [--encrypted] [--vswitch-env "K=V K2=V2 ..."]
#                         [--network-config 'key = value' ...] [--node-config 'key = value' ...]
#                         [--metrics tcp1,tcp4,udp,ping,busyping] [--chart FILE.png]
#                         [--variant 'NAME: SETTINGS' ...] [--compare-workers N,M,...]
#                         [--underlay-tx on|off] [--underlay-gro]
#
#   --rounds N            rounds of every measurement; the median is reported (default 3)
#   --time S              seconds per iperf3 run (default 5)
#   --no-build            use the binaries already in target/release (default: cargo build
#                         --release --bins first)
#   --only kernel|vswitch build and measure only one testbed (no ratios then); with
#                         --encrypted, --only vswitch keeps the ESP testbed (not --only kernel)
#   --encrypted           also build a third testbed, "esp": vswitch with network blue
#                         encrypted (ESP, AES-256-GCM, in UDP 4500), and report it against
#                         plaintext vswitch
#   --vswitch-env "..."   environment for every vswitchd process, space-separated K=V words
#                         (e.g. RUST_LOG=vswitch=debug, or VSWITCH_OFFLOADS=off)
#   --network-config STR  TOML lines appended to the [[network]] table of every vswitchd
#                         config (with --encrypted the esp testbed's too, after its encryption
#                         lines), verbatim; repeat it, or pass several lines in one string
#                         (e.g. 'mtu = 1400')
#   --node-config STR     TOML lines appended to the [node] table of every vswitchd config
#                         (e.g. 'workers = 1'; the default, 0, runs half the cores' worth of workers)
#   --metrics LIST        measure only these, comma-separated, of tcp1 (with the CPU figure),
#                         tcp4, udp, ping and busyping (default: all five), to look at one
#                         figure quickly
#   --variant 'NAME: SETTINGS'
#                         also build a vswitch testbed NAME (lower case letters and digits,
#                         up to 8) whose daemons get SETTINGS on top of the others: items
#                         separated by ';', each a TOML line for [node] ('workers = 1'),
#                         'env K=V' for vswitchd's environment, 'bin DIR' to run the
#                         vswitchd and vswitchctl in DIR (another build: an A/B comparison in
#                         one run), or 'encrypted' for network blue encrypted as in the esp
#                         testbed; it is measured alternately with the others and reported
#                         with its own column and NAME/kernel ratio (e.g. --variant 'nospin:
#                         env VSWITCH_BUSY_POLL_US=0', --variant 'before: bin /tmp/old',
#                         with --encrypted --variant 'espold: encrypted; bin /tmp/old')
#   --compare-workers N,M,...
#                         a variant wN with 'workers = N' for each N: the default worker
#                         policy against fixed counts in the same run (e.g. 1,2)
#   --underlay-tx on|off  tx offloads (checksum, and with it UDP and TCP segmentation) of every
#                         testbed's underlay veths (default on, as a veth comes and as
#                         `vswitchctl doctor` wants them). off makes the veth checksum and
#                         segment vswitchd's UDP GSO sends in software, one datagram at a time
#                         to the peer, while the kernel path's tunnel-GSO packets still cross
#                         whole (tx-udp_tnl-segmentation stays on) with their checksums done
#                         in software: see benches/README.md
#   --underlay-gro        turn GRO on on every testbed's underlay veths: a veth then receives
#                         through NAPI, as a NIC does, which the kernel's busy-polling
#                         (VSWITCH_BUSY_POLL=kernel) needs; the kernel testbed gets it too
#   --chart FILE.png      also draw the comparison (throughput, CPU per GB, RTT; one bar per
#                         testbed) with benches/chart.py, installing Debian's
#                         python3-matplotlib if it is missing
#
# What it builds (everything inside namespaces named vb<PID>-*; the root namespace gets no
# address and sends nothing):
#
#   Testbed "kernel" (the reference)        Testbed "vswitch"
#   vb<PID>-kca  10.0.9.2 (veth eth0)       vb<PID>-vca  10.0.9.2 (TAP eth0, attach-namespace)
#     vb<PID>-kh1: br0 + vx0 (VNI 42)         vb<PID>-vh1: vswitchd (network blue, VNI 42)
#       ul0 192.0.2.1 ==veth== ul0 192.0.2.2    ul0 192.0.2.1 ==veth== ul0 192.0.2.2
#     vb<PID>-kh2: br0 + vx0 (VNI 42)         vb<PID>-vh2: vswitchd
#   vb<PID>-kcb  10.0.9.3                   vb<PID>-vcb  10.0.9.3
#
# With --encrypted, testbed "esp" (vswitch+ESP) is the vswitch one again in vb<PID>-e* (eca,
# eh1, eh2, ecb), its network blue with `encrypted = true`, one key file made by `vswitchctl
# gen-key` for both hosts, and a state_dir per host, all in the temporary directory. Its
# containers get the encrypted network's MTU (1408 on the 1500 underlay, not 1450).
#
# All testbeds are built up front; every metric is then measured alternately on one and the
# other(s) (the order flips each round), so that whatever else the machine is doing falls on
# all of them. An absolute figure on a shared machine means little: read the ratio (TESTING.md).
#
# Metrics, container a -> container b (iperf3 server persistent in b):
#   TCP 1 stream and 4 streams (-P 4): end.sum_received.bits_per_second
#   UDP 64-byte payloads at unlimited rate (-u -l 64 -b 0): received packets per second
#     ((packets - lost_packets) / seconds) and the loss in %
#   ping RTT (200 pings, 10 ms apart): average and 99th percentile of the per-packet times
#   ping RTT on a busy host: the same while container b runs one CPU-bound loop per CPU (the
#     loops are started before and stopped, by pid, after each ping run): what a host whose
#     containers use all its CPUs sees, where a switch that spins would fight them for cores
#   wake-ups per round trip, for both pings: how often a thread of the path went to sleep and
#     had to be woken (voluntary context switches, /proc/PID/task/*/status and ping's rusage),
#     over the replies: ping's own, both vswitchd's (every thread), and the ksoftirqd threads'
#     (machine-wide); the kernel's datapath runs in softirq inside ping's own system calls, so
#     its figure is ping's sleeps (the 10 ms interval included: at least 1 per ping) plus
#     ksoftirqd. A wake-up across vCPUs costs ~15 us on the 2-vCPU VM of the README.
#     Also vswitchd's preemptions (involuntary switches: a yield that let another thread run,
#     or the scheduler taking the core) per round trip
#   vswitchd CPU: utime+stime of the testbed's two vswitchd processes during the TCP 1-stream
#     runs, as % of one core over the wall time of the run (the kernel's datapath runs in
#     softirq context and cannot be attributed the same way, so there is no kernel figure)
#   CPU per GB, TCP 1 and 4 streams: machine-wide busy time (/proc/stat: user, nice, system,
#     irq, softirq and steal of every CPU, so every process and softirq, the kernel's datapath
#     and both iperf3 included) over each TCP run, in seconds per 10^9 bytes received; for every
#     testbed, kernel included. It also counts whatever else runs on the machine meanwhile:
#     compare testbeds of one run, and look at the load average
#   testbed CPU per GB, TCP 1 and 4 streams: the same counting only the testbed's own work:
#     utime+stime of both iperf3 and (vswitch) both vswitchd, every ksoftirqd thread, and the
#     machine's irq + softirq time, where both datapaths run; what other work on a shared
#     machine adds is left out (bar its softirq share)
#
# Output: a table (metric | kernel | vswitch | vswitch/kernel; with --encrypted metric | kernel
# | vswitch | vswitch+ESP | vswitch/kernel | ESP/vswitch), the machine (nproc, CPU model,
# kernel), the vswitchd counters (and `show sa` of the esp testbed's host 1), and one JSON line
# starting with "RESULT ".
#
# Cleanup: on exit, failure, Ctrl-C or SIGTERM it stops the processes it started (by their pid,
# checking they are still its own children) and deletes the namespaces it made (vb<PID>-*), and
# its temporary directory. When it fails it prints the end of the vswitchd logs first.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() {
	echo "iperf.sh: $*" >&2
	exit 1
}

ROUNDS=3
TIME=5
BUILD=1
ONLY=""
ENCRYPTED=0
VSWITCH_ENV_STR=""
NETWORK_CONFIG=()
NODE_CONFIG=()
METRICS="tcp1,tcp4,udp,ping,busyping"
CHART=""
UNDERLAY_GRO=0
UNDERLAY_TX=on
VARIANTS=()                # names, in the order given
declare -A VARIANT_TOML    # name -> TOML lines for [node]
declare -A VARIANT_ENV     # name -> K=V words
declare -A VARIANT_SPEC    # name -> SETTINGS as given
declare -A VARIANT_BIN     # name -> directory of its vswitchd and vswitchctl
declare -A VARIANT_ENC     # name -> 1 when network blue is encrypted
add_variant() {
	local spec=$1 name settings item
	[[ "$spec" =~ ^([a-z][a-z0-9]{0,7}):(.*)$ ]] ||
		die "--variant: '$spec' is not 'NAME: SETTINGS' (NAME: up to 8 lower case letters and digits)"
	name=${BASH_REMATCH[1]}
	settings=${BASH_REMATCH[2]}
	case "$name" in kernel | vswitch | esp) die "--variant: '$name' is a testbed already" ;; esac
	[ -z "${VARIANT_SPEC[$name]+x}" ] || die "--variant: '$name' given twice"
	VARIANTS+=("$name")
	VARIANT_SPEC[$name]=$(echo "$settings" | sed 's/^ *//')
	VARIANT_TOML[$name]=""
	VARIANT_ENV[$name]=""
	IFS=';' read -r -a items <<<"$settings"
	for item in "${items[@]}"; do
		item=$(echo "$item" | sed 's/^ *//;s/ *$//')
		[ -n "$item" ] || continue
		if [[ "$item" =~ ^env\ +([A-Za-z_][A-Za-z0-9_]*=.*)$ ]]; then
			VARIANT_ENV[$name]+=" ${BASH_REMATCH[1]}"
		elif [[ "$item" =~ ^bin\ +(.+)$ ]]; then
			VARIANT_BIN[$name]=${BASH_REMATCH[1]}
			[ -x "${VARIANT_BIN[$name]}/vswitchd" ] && [ -x "${VARIANT_BIN[$name]}/vswitchctl" ] ||
				die "--variant $name: no vswitchd and vswitchctl in ${VARIANT_BIN[$name]}"
		elif [ "$item" = encrypted ]; then
			VARIANT_ENC[$name]=1
		else
			VARIANT_TOML[$name]+="$item"$'\n'
		fi
	done
}
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
	--time) TIME=${2:?--time needs seconds}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--only) ONLY=${2:?--only needs kernel or vswitch}; shift 2 ;;
	--encrypted) ENCRYPTED=1; shift ;;
	--vswitch-env) VSWITCH_ENV_STR=${2?--vswitch-env needs \"K=V ...\"}; shift 2 ;;
	--network-config) NETWORK_CONFIG+=("${2?--network-config needs TOML lines}"); shift 2 ;;
	--node-config) NODE_CONFIG+=("${2?--node-config needs TOML lines}"); shift 2 ;;
	--metrics) METRICS=${2:?--metrics needs a list such as tcp1,ping}; shift 2 ;;
	--chart) CHART=${2:?--chart needs a file name such as results.png}; shift 2 ;;
	--underlay-gro) UNDERLAY_GRO=1; shift ;;
	--underlay-tx)
		UNDERLAY_TX=${2:?--underlay-tx needs on or off}
		[[ "$UNDERLAY_TX" =~ ^(on|off)$ ]] || die "--underlay-tx: '$UNDERLAY_TX' is neither on nor off"
		shift 2
		;;
	--variant) add_variant "${2:?--variant needs 'NAME: SETTINGS'}"; shift 2 ;;
	--compare-workers)
		IFS=, read -r -a ns <<<"${2:?--compare-workers needs counts such as 1,2}"
		for n in "${ns[@]}"; do
			[[ "$n" =~ ^[0-9]+$ ]] || die "--compare-workers: '$n' is not a number"
			add_variant "w$n: workers = $n"
		done
		shift 2
		;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (--help lists the options)" ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds: '$ROUNDS' is not a positive whole number"
[[ "$TIME" =~ ^[1-9][0-9]*$ ]] || die "--time: '$TIME' is not a positive whole number of seconds"
MEASURES=() # "tcp 1" -> measure_tcp TB 1
IFS=, read -r -a wanted <<<"$METRICS"
for m in "${wanted[@]}"; do
	case "$m" in
	tcp1) MEASURES+=("tcp 1") ;;
	tcp4) MEASURES+=("tcp 4") ;;
	udp | ping | busyping) MEASURES+=("$m") ;;
	*) die "--metrics: '$m' is none of tcp1, tcp4, udp, ping, busyping" ;;
	esac
done
[ ${#MEASURES[@]} -gt 0 ] || die "--metrics: nothing to measure"
case "$ONLY" in
"") TESTBEDS=(kernel vswitch) ;;
kernel | vswitch) TESTBEDS=("$ONLY") ;;
*) die "--only: '$ONLY' is neither kernel nor vswitch" ;;
esac
if [ "$ENCRYPTED" = 1 ]; then
	[ "$ONLY" != kernel ] || die "--encrypted compares vswitch+ESP with vswitch: not with --only kernel"
	TESTBEDS+=(esp)
fi
# Testbed names as printed, and the width of the name column in the progress lines.
declare -A LABEL=([kernel]=kernel [vswitch]=vswitch [esp]=vswitch+ESP)
declare -A LETTER=([vswitch]=v [esp]=e) # namespaces $PFX-<letter>*, keys of VSW_PID
LW=7
[ "$ENCRYPTED" = 1 ] && LW=11
if [ ${#VARIANTS[@]} -gt 0 ]; then
	[ "$ONLY" != kernel ] || die "--variant is a vswitch testbed: not with --only kernel"
	k=0
	for v in "${VARIANTS[@]}"; do
		k=$((k + 1))
		TESTBEDS+=("$v")
		LABEL[$v]=$v
		LETTER[$v]=x$k
		[ ${#v} -gt $LW ] && LW=${#v}
	done
fi
read -r -a VSWITCH_ENV <<<"$VSWITCH_ENV_STR"
for kv in "${VSWITCH_ENV[@]}"; do
	[[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--vswitch-env: '$kv' is not K=V"
done
uses_vswitch() { [ "$ONLY" != kernel ]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
VSWITCHD=$BIN/vswitchd
VSWITCHCTL=$BIN/vswitchctl
PFX="vb$$"
WORK=""
NAMESPACES=() # every namespace this run made, in creation order
PIDS=()       # every background process this run started and has not yet seen end

# ---------------------------------------------------------------------------------------------
# Cleanup
# ---------------------------------------------------------------------------------------------

# True while $1 is a live (not zombie) child of this script: a pid we started, never a reused
# one that now belongs to someone else.
is_our_child() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # drop "pid (comm) ": comm may hold spaces and parentheses
	set -- $stat     # state ppid ...
	[ "$1" != Z ] && [ "$2" = "$$" ]
}

stop_pid() {
	local pid=$1 i
	is_our_child "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		is_our_child "$pid" || break
		sleep 0.1
	done
	if is_our_child "$pid"; then
		echo "iperf.sh: pid $pid ignored SIGTERM for 5 s, sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

forget_pid() {
	local keep=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

CLEANED=0
cleanup() {
	local rc=$? i log
	[ "$CLEANED" = 1 ] && return
	CLEANED=1
	trap - EXIT INT TERM
	set +e
	if [ "$rc" = 130 ] || [ "$rc" = 143 ]; then
		echo "iperf.sh: interrupted; stopping what it started and removing $PFX-*" >&2
	elif [ "$rc" -ne 0 ] && [ -n "$WORK" ]; then
		for log in "$WORK"/*.log; do
			[ -s "$log" ] || continue
			echo "--- last lines of $(basename "$log") ---" >&2
			tail -n 20 "$log" >&2
		done
	fi
	# Processes first (newest first): vswitchd removes its TAPs on SIGTERM, and a namespace
	# with a process still in it would outlive `ip netns del`.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
	for ((i = ${#NAMESPACES[@]} - 1; i >= 0; i--)); do
		ip netns del "${NAMESPACES[i]}" 2>/dev/null
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Checks and build
# ---------------------------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces)"
for tool in ip bridge ethtool iperf3 ping python3 ss timeout; do
	command -v "$tool" >/dev/null || die "needs $tool (scripts/install-deps.sh installs it)"
done
if uses_vswitch; then
	if [ "$BUILD" = 1 ]; then
		echo "== cargo build --release --bins" >&2
		(cd "$ROOT" && cargo build --release --bins)
	fi
	[ -x "$VSWITCHD" ] && [ -x "$VSWITCHCTL" ] ||
		die "no $VSWITCHD or $VSWITCHCTL (run without --no-build)"
fi
WORK=$(mktemp -d "/tmp/$PFX-XXXXXX")

# ---------------------------------------------------------------------------------------------
# Testbeds
# ---------------------------------------------------------------------------------------------

nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

ns_add() {
	ip netns add "$1"
	NAMESPACES+=("$1")
	nsx "$1" ip link set lo up
}

# Two host namespaces $1 (192.0.2.1) and $2 (192.0.2.2) joined by a veth pair, ul0 in each.
make_underlay() {
	ns_add "$1"
	ns_add "$2"
	ip link add ul0 netns "$1" type veth peer name ul0 netns "$2"
	local ns ip
	for ns in "$1" "$2"; do
		[ "$ns" = "$1" ] && ip=192.0.2.1 || ip=192.0.2.2
		nsx "$ns" ip addr add "$ip/24" dev ul0
		nsx "$ns" ip link set ul0 up
		# As a veth comes (tx offloads on), unless --underlay-tx off. Both testbeds get the
		# same underlay.
		nsx "$ns" ethtool -K ul0 tx "$UNDERLAY_TX" >/dev/null
		if [ "$UNDERLAY_GRO" = 1 ]; then nsx "$ns" ethtool -K ul0 gro on >/dev/null; fi
	done
}

declare -A CA CB # testbed -> container namespace of a (client, 10.0.9.2) and b (server)
declare -A VSW_PID VSW_SOCK # v1 v2 (testbed vswitch), e1 e2 (esp) -> pid, control socket
declare -A SERVER_PID      # testbed -> pid of its persistent iperf3 server
declare -A HOST_TB         # v1 v2 e1 ... -> its testbed
declare -A SOCK_CTL        # control socket -> the vswitchctl that speaks to its vswitchd
VSW_HOSTS=()                # those keys, in start order

build_kernel() {
	local h1=$PFX-kh1 h2=$PFX-kh2
	make_underlay "$h1" "$h2"
	local h local_ip remote_ip c ip
	for h in "$h1" "$h2"; do
		if [ "$h" = "$h1" ]; then
			local_ip=192.0.2.1 remote_ip=192.0.2.2 c=$PFX-kca ip=10.0.9.2
		else
			local_ip=192.0.2.2 remote_ip=192.0.2.1 c=$PFX-kcb ip=10.0.9.3
		fi
		nsx "$h" ip link add vx0 type vxlan id 42 dstport 4789 local "$local_ip" nolearning
		nsx "$h" bridge fdb append 00:00:00:00:00:00 dev vx0 dst "$remote_ip"
		nsx "$h" ip link add br0 type bridge
		nsx "$h" ip link set vx0 master br0
		nsx "$h" ip link set vx0 up
		nsx "$h" ip link set br0 up
		ns_add "$c"
		ip link add eth0 netns "$c" type veth peer name vc netns "$h"
		nsx "$h" ip link set vc master br0 up
		nsx "$c" ip link set eth0 mtu 1450 up
		nsx "$c" ip addr add "$ip/24" dev eth0
	done
	CA[kernel]=$PFX-kca
	CB[kernel]=$PFX-kcb
}

# node.toml for host $1 (1 or 2) of testbed letter $2 (v: vswitch, e: esp, xK: variant K), as
# $WORK/$2h$1.toml; $3, if given, is the variant whose [node] lines it adds.
write_config() {
	local i=$1 l=$2 me peer name peer_name line
	if [ "$i" = 1 ]; then
		me=192.0.2.1 peer=192.0.2.2 name=node-a peer_name=node-b
	else
		me=192.0.2.2 peer=192.0.2.1 name=node-b peer_name=node-a
	fi
	{
		printf '[node]\nname = "%s"\nunderlay_ip = "%s"\ncontrol_socket = "%s"\n' \
			"$name" "$me" "$WORK/${l}h$i.sock"
		# Its own state_dir (ports to re-adopt after a restart): the default is one for every
		# daemon on the machine, and each testbed's daemons would try to adopt the others'.
		printf 'state_dir = "%s"\n' "$WORK/state-${l}h$i"
		for line in "${NODE_CONFIG[@]}"; do printf '%s\n' "$line"; done
		[ -n "${3:-}" ] && printf '%s' "${VARIANT_TOML[$3]}"
		printf '\n[[peer]]\nname = "%s"\nunderlay_ip = "%s"\n\n' "$peer_name" "$peer"
		printf '[[network]]\nname = "blue"\nvni = 42\nsubnet = "10.0.9.0/24"\n'
		if [ "$l" = e ] || [ -n "${3:+${VARIANT_ENC[$3]:-}}" ]; then
			printf 'encrypted = true\nkey_file = "%s"\n' "$WORK/blue.key"
		fi
		for line in "${NETWORK_CONFIG[@]}"; do printf '%s\n' "$line"; done
	} >"$WORK/${l}h$i.toml"
}

ctl() {
	local sock=$1
	shift
	"${SOCK_CTL[$sock]:-$VSWITCHCTL}" --socket "$sock" "$@"
}

# MTU of network blue on vswitchd $1 (v1, e1, ...): what its containers got.
blue_mtu() {
	ctl "${VSW_SOCK[$1]}" show networks --json | python3 -c \
		'import json,sys; print(next(n["mtu"] for n in json.load(sys.stdin) if n["name"] == "blue"))'
}

# The vswitch layout for testbed $1 with letter $2: namespaces $PFX-$2h1/2 running vswitchd,
# containers $PFX-$2ca/$2cb attached by attach-namespace.
build_vswitchd_testbed() {
	local tb=$1 l=$2 h1=$PFX-$2h1 h2=$PFX-$2h2 i h sock pid t variant="" venv=()
	local vswitchd=$VSWITCHD
	[ -n "${VARIANT_SPEC[$tb]+x}" ] && variant=$tb
	[ -n "$variant" ] && read -r -a venv <<<"${VARIANT_ENV[$variant]}"
	[ -n "${VARIANT_BIN[$tb]:-}" ] && vswitchd=${VARIANT_BIN[$tb]}/vswitchd
	make_underlay "$h1" "$h2"
	for i in 1 2; do
		[ "$i" = 1 ] && h=$h1 || h=$h2
		sock=$WORK/${l}h$i.sock
		write_config "$i" "$l" "$variant"
		[ -n "${VARIANT_BIN[$tb]:-}" ] && SOCK_CTL[$sock]=${VARIANT_BIN[$tb]}/vswitchctl
		nsx "$h" "$vswitchd" --config "$WORK/${l}h$i.toml" --check >/dev/null ||
			die "vswitchd refuses the config $WORK/${l}h$i.toml (see above; --network-config?)"
		env "${VSWITCH_ENV[@]}" "${venv[@]}" ip netns exec "$h" "$vswitchd" --config "$WORK/${l}h$i.toml" \
			>"$WORK/vswitchd-${l}h$i.log" 2>&1 </dev/null &
		pid=$!
		PIDS+=("$pid")
		for t in $(seq 200); do
			is_our_child "$pid" || die "vswitchd on $h exited at start"
			ctl "$sock" show networks >/dev/null 2>&1 && break
			[ "$t" = 200 ] && die "vswitchd on $h did not answer on $sock within 10 s"
			sleep 0.05
		done
		VSW_PID[$l$i]=$pid
		VSW_SOCK[$l$i]=$sock
		VSW_HOSTS+=("$l$i")
		HOST_TB[$l$i]=$tb
	done
	ns_add "$PFX-${l}ca"
	ns_add "$PFX-${l}cb"
	ctl "${VSW_SOCK[${l}1]}" attach-namespace --network blue --netns "$PFX-${l}ca" \
		--ip 10.0.9.2/24 >/dev/null
	ctl "${VSW_SOCK[${l}2]}" attach-namespace --network blue --netns "$PFX-${l}cb" \
		--ip 10.0.9.3/24 >/dev/null
	CA[$tb]=$PFX-${l}ca
	CB[$tb]=$PFX-${l}cb
	# Encrypted traffic never takes the tunnel device (and is not probed on the VXLAN port).
	[ "$tb" = esp ] || [ -n "${VARIANT_ENC[$tb]:-}" ] || wait_tunnel_gso "$l"
}

# Tunnel GSO (README, Performance) starts a probe round or two after the daemons, once the
# peer answered through the device: wait for it (at most 15 s) so that no round is measured
# half one way, half the other. Daemons without the device (VSWITCH_TUNNEL_GSO=off, older
# kernels: no "tunnel GSO ready" in the log) are not waited for.
wait_tunnel_gso() {
	local l=$1 i log t
	for i in 1 2; do
		log=$WORK/vswitchd-${l}h$i.log
		grep -q "tunnel GSO ready" "$log" 2>/dev/null || continue
		for t in $(seq 150); do
			grep -q "tunnel GSO on:" "$log" && break
			[ "$t" = 150 ] && echo "iperf.sh: $(basename "$log"): tunnel GSO not on after 15 s" >&2
			sleep 0.1
		done
	done
}

build_vswitch() { build_vswitchd_testbed vswitch v; }

# The same with network blue encrypted: one key for both hosts (mode 0600, in $WORK).
build_esp() {
	blue_key
	build_vswitchd_testbed esp e
}

# The key of encrypted network blue, made once for every testbed that encrypts it.
blue_key() {
	[ -e "$WORK/blue.key" ] && return
	"$VSWITCHCTL" gen-key --out "$WORK/blue.key" 2>/dev/null ||
		die "vswitchctl gen-key --out $WORK/blue.key failed"
}

# The iperf3 server in container b, persistent for the whole run; waits until it listens.
start_server() {
	local tb=$1 pid t
	ip netns exec "${CB[$tb]}" iperf3 -s -B 10.0.9.3 -p 5201 \
		>"$WORK/iperf3-server-$tb.log" 2>&1 </dev/null &
	pid=$!
	PIDS+=("$pid")
	SERVER_PID[$tb]=$pid
	for t in $(seq 100); do
		is_our_child "$pid" || die "iperf3 server in ${CB[$tb]} exited at start"
		[ -n "$(nsx "${CB[$tb]}" ss -Hltn 'sport = :5201')" ] && return 0
		sleep 0.05
	done
	die "iperf3 server in ${CB[$tb]} does not listen after 5 s"
}

# Runs a command in the background and waits for it, so a signal interrupts the wait and the
# cleanup stops the command by pid. stdout to $1, stderr to $1.err.
run_tracked() {
	local out=$1 pid rc=0
	shift
	"$@" >"$out" 2>"$out.err" </dev/null &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget_pid "$pid"
	return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------

SAMPLES=$WORK/samples.tsv # metric \t testbed \t value
: >"$SAMPLES"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$SAMPLES"; }

# iperf3 from container a of testbed $1 to b, JSON into $2; retries while the persistent
# server is still finishing the previous test.
iperf() {
	local tb=$1 out=$2 try
	shift 2
	for try in 1 2 3 4 5; do
		if run_tracked "$out" timeout $((TIME + 30)) \
			ip netns exec "${CA[$tb]}" iperf3 -c 10.0.9.3 -p 5201 -t "$TIME" -J "$@"; then
			return 0
		fi
		grep -q "server is busy" "$out" 2>/dev/null || break
		sleep 1
	done
	echo "iperf.sh: iperf3 $* on the $tb testbed failed:" >&2
	cat "$out" "$out.err" >&2
	return 1
}

# Reads fields from iperf3 JSON $1: python expression over d, printed.
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# utime+stime, in clock ticks, of both vswitchd of testbed letter $1 (all threads:
# /proc/PID/stat sums them).
vswitchd_ticks() {
	local total=0 i stat
	for i in "$1"1 "$1"2; do
		stat=$(cat "/proc/${VSW_PID[$i]}/stat") || die "vswitchd ${VSW_PID[$i]} is gone"
		stat=${stat##*) }
		set -- $stat # field 3 of stat is $1 here, so utime (14) is $12, stime (15) is $13
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}

now_ns() { date +%s%N; }

# utime+stime in clock ticks of the processes (or threads) $@, summed; gone ones count 0.
proc_ticks() {
	local total=0 p stat
	for p in "$@"; do
		stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		set -- $stat
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}

# Ticks of the testbed $1's own work so far: its iperf3 server, its vswitchd (none for the
# kernel testbed), every ksoftirqd thread, and the machine's irq + softirq time (the kernel's
# datapath, ours and the reference's, runs there). The client's time comes from `times` (it is
# a child this shell waits for). Unlike the machine-wide figure, builds and other work on a
# shared machine are not in it (save for their share of softirq, small next to a 10 Gbit/s
# veth).
testbed_ticks() {
	local tb=$1 l=${LETTER[$1]:-} pids=() cpu user nice system idle iowait irq softirq rest
	pids+=("${SERVER_PID[$tb]}")
	[ -n "$l" ] && pids+=("${VSW_PID[${l}1]}" "${VSW_PID[${l}2]}")
	pids+=($(pgrep -x 'ksoftirqd/[0-9]*' || true))
	read -r cpu user nice system idle iowait irq softirq rest </proc/stat
	echo $(($(proc_ticks "${pids[@]}") + irq + softirq))
}

# CPU seconds (user + system) of the children this shell has waited for, so far (bash's
# `times`, second line, e.g. "0m1.250s 0m3.500s"). Run in this shell, not a subshell.
children_secs() {
	times >"$WORK/times"
	python3 -c '
import re, sys
u, s = sys.stdin.read().splitlines()[1].split()
f = lambda t: (lambda m: int(m[1]) * 60 + float(m[2]))(re.match(r"(\d+)m([\d.]+)s", t))
print(f"{f(u) + f(s):.3f}")' <"$WORK/times"
}

# Busy clock ticks of the whole machine so far: the "cpu" line of /proc/stat, user + nice +
# system + irq + softirq + steal (guest time is already inside user; idle and iowait are not
# busy).
machine_busy_ticks() {
	local cpu user nice system idle iowait irq softirq steal rest
	read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
	echo $((user + nice + system + irq + softirq + steal))
}

measure_tcp() { # testbed streams
	local tb=$1 n=$2 out=$WORK/tcp$2-$1.json t0 t1 c0 c1 bps metric=tcp$2 l=${LETTER[$1]:-}
	local m0 m1 b0 b1 k0 k1 bytes cpu_gb tb_gb
	if [ "$tb" != kernel ] && [ "$n" = 1 ]; then
		c0=$(vswitchd_ticks "$l")
		t0=$(now_ns)
	fi
	children_secs >/dev/null # the python3 it runs is waited for before the first reading
	k0=$(children_secs)
	b0=$(testbed_ticks "$tb")
	m0=$(machine_busy_ticks)
	iperf "$tb" "$out" -P "$n"
	m1=$(machine_busy_ticks)
	b1=$(testbed_ticks "$tb")
	k1=$(children_secs)
	if [ "$tb" != kernel ] && [ "$n" = 1 ]; then
		t1=$(now_ns)
		c1=$(vswitchd_ticks "$l")
		record cpu "$tb" "$(python3 -c 'import sys; c,hz,ns=map(int,sys.argv[1:]); print(f"{c/hz/(ns/1e9)*100:.1f}")' \
			$((c1 - c0)) "$(getconf CLK_TCK)" $((t1 - t0)))"
	fi
	bps=$(json "$out" 'd["end"]["sum_received"]["bits_per_second"]')
	bytes=$(json "$out" 'd["end"]["sum_received"]["bytes"]')
	record "$metric" "$tb" "$(python3 -c "print(f'{$bps/1e9:.3f}')")"
	# The iperf3 run's whole wall time is in the busy ticks (connection set-up included), and
	# the bytes are those received: a little pessimistic for every testbed alike.
	cpu_gb=$(python3 -c 'import sys; t,hz,b=map(int,sys.argv[1:]); print(f"{t/hz/(b/1e9):.3f}" if b else "nan")' \
		$((m1 - m0)) "$(getconf CLK_TCK)" "${bytes%.*}")
	[ "$cpu_gb" = nan ] || record "cpu_gb$n" "$tb" "$cpu_gb"
	# The client's seconds: k1 - k0, less the python3 run by the first children_secs call
	# after the run (a few ms; the same for every testbed).
	tb_gb=$(python3 -c 'import sys; t,hz,k0,k1,b=sys.argv[1:]; t,hz,b=int(t),int(hz),int(b); print(f"{(t/hz+float(k1)-float(k0))/(b/1e9):.3f}" if b else "nan")' \
		$((b1 - b0)) "$(getconf CLK_TCK)" "$k0" "$k1" "${bytes%.*}")
	[ "$tb_gb" = nan ] || record "tbcpu_gb$n" "$tb" "$tb_gb"
	printf '    %-*s TCP x%s  %8.3f Gbit/s  CPU s/GB: %s machine-wide, %s testbed\n' "$LW" \
		"${LABEL[$tb]}" "$n" "$(python3 -c "print($bps/1e9)")" "$cpu_gb" "$tb_gb" >&2
}

measure_udp() {
	local tb=$1 out=$WORK/udp-$1.json line
	iperf "$tb" "$out" -u -l 64 -b 0
	# end.sum: packets is what the client sent, lost_packets what the server did not see.
	line=$(json "$out" '"%.1f %.2f" % ((d["end"]["sum"]["packets"] - d["end"]["sum"]["lost_packets"]) / d["end"]["sum"]["seconds"] / 1e3, d["end"]["sum"]["lost_percent"])')
	record udp_kpps "$tb" "${line% *}"
	record udp_loss "$tb" "${line#* }"
	printf '    %-*s UDP 64B  %8s kpps received, %s%% lost\n' "$LW" "${LABEL[$tb]}" "${line% *}" \
		"${line#* }" >&2
}

# "voluntary involuntary" context switches, summed over every thread of the processes $@ (gone
# ones count 0); a voluntary switch is a thread going to sleep, so one wake-up later.
ctx_switches() {
	local files=() p
	for p in "$@"; do files+=(/proc/"$p"/task/*/status); done
	awk '/^voluntary_ctxt_switches:/ {v += $2} /^nonvoluntary_ctxt_switches:/ {n += $2}
		END {print v + 0, n + 0}' "${files[@]}" 2>/dev/null || echo "0 0"
}

measure_ping() { # testbed [metric prefix]
	local tb=$1 key=${2:-} line l=${LETTER[$1]:-} sv0 sv1 sk0 sk1 ksoft wake
	local out=$WORK/${key}ping-$tb.txt
	ksoft=$(pgrep -x 'ksoftirqd/[0-9]*' || true)
	[ -n "$l" ] && sv0=$(ctx_switches "${VSW_PID[${l}1]}" "${VSW_PID[${l}2]}")
	sk0=$(ctx_switches $ksoft)
	# ping's own context switches from its rusage (it ends before /proc could be read).
	run_tracked "$out" python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"rusage {r.ru_nvcsw} {r.ru_nivcsw}")
sys.exit(rc)' ip netns exec "${CA[$tb]}" ping -n -c 200 -i 0.01 -W 1 10.0.9.3 || {
		echo "iperf.sh: ping on the $tb testbed failed:" >&2
		tail -n 5 "$out" "$out.err" >&2
		return 1
	}
	sk1=$(ctx_switches $ksoft)
	[ -n "$l" ] && sv1=$(ctx_switches "${VSW_PID[${l}1]}" "${VSW_PID[${l}2]}")
	line=$(grep -o 'time=[0-9.]*' "$out" | cut -d= -f2 | sort -g |
		awk '{t[NR]=$1; s+=$1} END {i=int(NR*0.99); if (i<NR*0.99) i++; printf "%.3f %.3f %d", s/NR, t[i], NR}')
	set -- $line
	record "${key}rtt_avg" "$tb" "$1"
	record "${key}rtt_p99" "$tb" "$2"
	# Wake-ups per round trip: ping's + vswitchd's + ksoftirqd's voluntary switches / replies.
	wake=$(python3 -c '
import sys
replies = int(sys.argv[1])
ping = [int(x) for x in sys.argv[2].split()[1:3]]
sk0, sk1 = ([int(x) for x in a.split()] for a in sys.argv[3:5])
sv = [[int(x) for x in a.split()] for a in sys.argv[5:7] if a]
vsw = [sv[1][0] - sv[0][0], sv[1][1] - sv[0][1]] if len(sv) == 2 else None
per = lambda n: n / replies
total = ping[0] + sk1[0] - sk0[0] + (vsw[0] if vsw else 0)
print(f"{per(total):.2f} {per(ping[0]):.2f} {per(sk1[0] - sk0[0]):.2f}",
      f"{per(vsw[0]):.2f} {per(vsw[1]):.2f}" if vsw else "- -")' \
		"$3" "$(grep '^rusage ' "$out")" "$sk0" "$sk1" "${sv0:-}" "${sv1:-}")
	set -- $line $wake
	record "${key}wake_rtt" "$tb" "$4"
	record "${key}wake_ping" "$tb" "$5"
	record "${key}wake_ksoftirqd" "$tb" "$6"
	[ "$7" != - ] && record "${key}wake_vswitchd" "$tb" "$7"
	[ "$8" != - ] && record "${key}preempt_vswitchd" "$tb" "$8"
	printf '    %-*s %-8s avg %s ms, p99 %s ms (%s/200 replies); wake-ups per round trip %s (ping %s, ksoftirqd %s, vswitchd %s; vswitchd preempted %s)\n' \
		"$LW" "${LABEL[$tb]}" "${key}ping" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" >&2
}

# Ping while container b keeps every CPU busy: one shell loop per CPU in its namespace.
measure_busyping() {
	local tb=$1 hogs=() i pid rc=0
	for i in $(seq "$(nproc)"); do
		ip netns exec "${CB[$tb]}" sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
		PIDS+=("$!")
		hogs+=("$!")
	done
	sleep 0.5 # the loops running everywhere before the first ping
	measure_ping "$tb" busy || rc=$?
	for pid in "${hogs[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget_pid "$pid"
	done
	return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
for tb in "${TESTBEDS[@]}"; do
	echo "== building the $tb testbed ($PFX-*)" >&2
	case "$tb" in
	kernel | vswitch | esp) "build_$tb" ;;
	*)
		[ -z "${VARIANT_ENC[$tb]:-}" ] || blue_key
		build_vswitchd_testbed "$tb" "${LETTER[$tb]}"
		;;
	esac
	start_server "$tb"
	# Connectivity, ARP and (vswitch) MAC learning before anything is timed.
	nsx "${CA[$tb]}" ping -n -q -c 3 -i 0.2 -W 2 10.0.9.3 >/dev/null ||
		die "$tb testbed: 10.0.9.2 cannot ping 10.0.9.3"
done
if [ "$ENCRYPTED" = 1 ]; then
	# That ping must have gone through security associations, or the esp testbed is plaintext.
	ctl "${VSW_SOCK[e1]}" show sa --json | python3 -c '
import json, sys
sas = json.load(sys.stdin)
sys.exit(0 if any(sa["direction"] == "out" and sa["packets"] > 0 for sa in sas) else 1)' ||
		die "esp testbed: no outbound SA carried the ping (vswitchctl show sa); not encrypted?"
	MTUS="$([ "$ONLY" = vswitch ] || echo "kernel=1450 ")vswitch=$(blue_mtu v1) esp=$(blue_mtu e1)"
fi

for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then order=("${TESTBEDS[@]}"); else
		order=()
		for ((i = ${#TESTBEDS[@]} - 1; i >= 0; i--)); do order+=("${TESTBEDS[i]}"); done
	fi
	echo "== round $r/$ROUNDS (${order[*]})" >&2
	for metric in "${MEASURES[@]}"; do
		for tb in "${order[@]}"; do
			# shellcheck disable=SC2086 # "tcp 1" -> measure_tcp TB 1
			set -- $metric
			"measure_$1" "$tb" "${@:2}"
			sleep 1 # let queues drain so one run does not spill into the next
		done
	done
done

echo >&2
if uses_vswitch; then
	for key in "${VSW_HOSTS[@]}"; do
		tb=${HOST_TB[$key]}
		echo "== vswitchctl show stats on ${LABEL[$tb]} host ${key: -1} (after the run)"
		ctl "${VSW_SOCK[$key]}" show stats
		echo
	done
fi
if [ "$ENCRYPTED" = 1 ]; then
	echo "== vswitchctl show sa on vswitch+ESP host 1 (after the run)"
	ctl "${VSW_SOCK[e1]}" show sa
	echo
fi

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
NPROC=$(nproc)
KERNEL=$(uname -r)
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

VARIANTS_STR=$(for v in "${VARIANTS[@]}"; do printf '%s\t%s\n' "$v" "${VARIANT_SPEC[$v]}"; done) \
	NODE_CONFIG_STR=$(printf '%s; ' "${NODE_CONFIG[@]}") \
	UNDERLAY_STR="veth, tx offloads $UNDERLAY_TX, GRO $([ "$UNDERLAY_GRO" = 1 ] && echo on || echo off)" \
	python3 - "$SAMPLES" "$ROUNDS" "$TIME" "$NPROC" "$CPU_MODEL" "$KERNEL" "$LOADAVG_START" \
	"$LOADAVG_END" "$VSWITCH_ENV_STR" "${MTUS:-}" "${NETWORK_CONFIG[@]}" <<'EOF' | tee "$WORK/summary.txt"
import json, os, statistics, sys

path, rounds, secs, nproc, cpu, kernel, load0, load1, venv, mtus, *netcfg = sys.argv[1:]
enc = mtus != ""  # --encrypted: a third testbed, "esp"; mtus is "kernel=1450 vswitch=... esp=..."
mtus = {tb: int(m) for tb, m in (w.split("=") for w in mtus.split())}
# --variant testbeds, in order: name -> settings as given.
variants = dict(l.split("\t", 1) for l in os.environ.get("VARIANTS_STR", "").splitlines() if l)
samples = {}
for line in open(path):
    metric, tb, value = line.rstrip("\n").split("\t")
    samples.setdefault(metric, {}).setdefault(tb, []).append(float(value))

# (key, label, unit, better) -- better: "higher", "lower" or None (no ratio)
METRICS = [
    ("tcp1", "TCP, 1 stream", "Gbit/s", "higher"),
    ("tcp4", "TCP, 4 streams", "Gbit/s", "higher"),
    ("cpu_gb1", "CPU per GB, TCP 1 stream", "s/GB", "lower"),
    ("cpu_gb4", "CPU per GB, TCP 4 streams", "s/GB", "lower"),
    ("tbcpu_gb1", "testbed CPU per GB, TCP 1 stream", "s/GB", "lower"),
    ("tbcpu_gb4", "testbed CPU per GB, TCP 4 streams", "s/GB", "lower"),
    ("udp_kpps", "UDP 64 B, received", "kpps", "higher"),
    ("udp_loss", "UDP 64 B, loss", "%", None),
    ("rtt_avg", "ping RTT, average", "ms", "lower"),
    ("rtt_p99", "ping RTT, p99", "ms", "lower"),
    ("busyrtt_avg", "ping RTT, busy host, average", "ms", "lower"),
    ("busyrtt_p99", "ping RTT, busy host, p99", "ms", "lower"),
    ("wake_rtt", "wake-ups per round trip", "/RTT", "lower"),
    ("wake_ping", "  of which ping's", "/RTT", None),
    ("wake_vswitchd", "  of which vswitchd's", "/RTT", None),
    ("wake_ksoftirqd", "  of which ksoftirqd's", "/RTT", None),
    ("preempt_vswitchd", "vswitchd preempted per round trip", "/RTT", None),
    ("busywake_rtt", "wake-ups per round trip, busy host", "/RTT", "lower"),
    ("busywake_vswitchd", "  of which vswitchd's", "/RTT", None),
    ("busypreempt_vswitchd", "vswitchd preempted per round trip, busy host", "/RTT", None),
    ("cpu", "vswitchd CPU, TCP 1 stream", "% of a core", None),
]

def fmt(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

result = {
    "bench": "iperf",
    "machine": {"nproc": int(nproc), "cpu": cpu, "kernel": kernel,
                "loadavg_start": load0, "loadavg_end": load1},
    "rounds": int(rounds), "time_s": int(secs),
    "vswitch_env": venv, "network_config": netcfg,
    "underlay": os.environ.get("UNDERLAY_STR", ""),
    "node_config": os.environ.get("NODE_CONFIG_STR", "").rstrip("; "),
    "metrics": {},
}
if enc:
    result["encrypted"] = True
    result["container_mtu"] = mtus
if variants:
    result["variants"] = variants
def median(s, tb):
    return statistics.median(s[tb]) if tb in s else None
def r4(x):
    return None if x is None else round(x, 4)
rows = []
for key, label, unit, better in METRICS:
    s = samples.get(key, {})
    k, v, e = median(s, "kernel"), median(s, "vswitch"), median(s, "esp")
    var = {n: median(s, n) for n in variants}
    ratio = v / k if better and k and v is not None else None
    eratio = e / v if better and v and e is not None else None
    vratio = {n: x / k if better and k and x is not None else None for n, x in var.items()}
    if k is None and v is None and e is None and all(x is None for x in var.values()):
        continue
    m = {"unit": unit, "kernel": r4(k), "vswitch": r4(v)}
    if enc:
        m["esp"] = r4(e)
    m.update({n: r4(x) for n, x in var.items()})
    m["ratio"] = r4(ratio)
    if enc:
        m["esp_ratio"] = r4(eratio)
    if variants:
        m["variant_ratios"] = {n: r4(x) for n, x in vratio.items()}
    m.update({"better": better, "samples": s})
    result["metrics"][key] = m
    note = {"higher": "higher is better", "lower": "lower is better"}.get(better, "")
    rf = lambda x: "-" if x is None else f"{x:.3f}"
    ratios = [rf(ratio)]
    if enc:
        ratios.append(rf(eratio))
    ratios += [rf(x) for x in vratio.values()]
    rows.append((f"{label} ({unit})", fmt(r4(k)), fmt(r4(v)), *([fmt(r4(e))] if enc else []),
                 *[fmt(r4(x)) for x in var.values()], *ratios, note))

head = ("metric", "kernel", "vswitch", *(["vswitch+ESP"] if enc else []), *variants,
        "vswitch/kernel", *(["ESP/vswitch"] if enc else []), *[f"{n}/kernel" for n in variants], "")
n = len(head) - 1  # columns before the note
w = [max(len(r[i]) for r in rows + [head]) for i in range(n)]
if enc:
    print(f"vswitch vs kernel VXLAN, and vswitch+ESP (encrypted) vs vswitch: "
          f"median of {rounds} round(s), {secs} s per iperf3 run")
else:
    print(f"vswitch vs kernel VXLAN: median of {rounds} round(s), {secs} s per iperf3 run")
print(f"machine: {nproc} CPU(s), {cpu}, kernel {kernel}; load average {load0} at start, {load1} at end")
print(f"underlay: {os.environ.get('UNDERLAY_STR', '')}")
if venv:
    print(f"vswitchd environment: {venv}")
for name, spec in variants.items():
    print(f"variant {name}: vswitch with {spec}")
for line in netcfg:
    print(f"extra [[network]] config: {line!r}")
if enc:
    names = {"kernel": "kernel", "vswitch": "vswitch", "esp": "vswitch+ESP"}
    print("container MTU: " + ", ".join(f"{names[tb]} {m}" for tb, m in mtus.items()))
print()
for r in [head] + rows:
    cells = [f"{r[0]:<{w[0]}}"] + [f"{r[i]:>{w[i]}}" for i in range(1, n)] + [r[n]]
    print("  ".join(cells).rstrip())
print()
print("ratio = vswitch / kernel: above 1 is vswitch ahead for throughput, behind for RTT and CPU per GB")
if enc:
    print("ESP/vswitch = vswitch+ESP / vswitch: below 1 is what encryption costs in throughput, "
          "above 1 in RTT and CPU per GB")
print("RESULT " + json.dumps(result, separators=(",", ":")))
EOF

if [ -n "$CHART" ]; then
	if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
		echo "== installing python3-matplotlib for the chart" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-o DPkg::Lock::Timeout=600 python3-matplotlib >/dev/null
	fi
	/usr/bin/python3 "$(dirname "$0")/chart.py" "$WORK/summary.txt" "$CHART"
fi
