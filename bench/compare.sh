#!/usr/bin/env bash
# compare.sh measures cacheyd's warm serving side by side with nginx, and
# its resident memory under a burst, all on loopback:
#
#   1. a warm large blob (from cacheyd's disk tier) against nginx serving the
#      same file with sendfile: wrk's throughput;
#   2. a warm manifest (from cacheyd's memory tier) against nginx serving the
#      same bytes as a static file: wrk's requests per second;
#      both with each server's default logging (access lines to a file) and
#      with logging off;
#   3. cacheyd's peak resident memory while NODES clients stream the large
#      blob through it, cold (one fill) and then warm (cacheyd-bench
#      --target --target-pid);
#   4. (PARTS=pinned, not part of the default) the hit path pinned: a warm
#      manifest from cacheyd's memory tier against nginx's static file, the
#      server alone on CPU SERVER_CPU (cacheyd with GOMAXPROCS=1, nginx with
#      one worker) and wrk alone on CPU LOAD_CPU (taskset), with access logs
#      on and off; each round measures both servers one after the other, and
#      the ratio of each round is reported as min / median / max.
#
# Usage, from the repository root (needs go, nginx and wrk:
# apt-get install -y nginx wrk):
#
#   bench/compare.sh                 # everything: 256 MiB blob, 256 clients
#   PARTS=serve bench/compare.sh     # only 1 and 2
#   PARTS=memory NODES=64 bench/compare.sh
#   PARTS=pinned ROUNDS=5 bench/compare.sh
#
# Settings (environment): CACHEYD (a cacheyd binary to measure; default:
# one built from this tree), CACHEYD_BENCH (the cacheyd-bench binary that
# runs the fake upstream and the clients of part 3; default: one built
# from this tree), BLOB (256MiB), DURATION of each wrk run (10s),
# ROUNDS of alternating runs whose median is reported (3),
# BLOB_CONNS (4) and MANIFEST_CONNS (64) wrk connections, WRK_THREADS (2),
# NODES (256), MEMORY (cacheyd's --memory-bytes, 256MiB), PORT_BASE (30400:
# the ports used are PORT_BASE to PORT_BASE+6 on 127.0.0.1, below Linux's
# ephemeral range so that no outgoing connection holds one), and for part 4
# SERVER_CPU (1) and LOAD_CPU (0), PIN_CONNS (64) wrk connections from its
# one thread, FULL_CPU (0.95): the share of its CPU both servers must have
# had in a round for it to count as one where nothing else competed, and
# PIN_LOGS ("on off"): the access log settings to measure.
#
# Everything it starts is stopped by process ID when it exits. It writes
# nothing outside a temporary directory (kept when KEEP=1).
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # go.mod's; also what the machine line reports

BLOB=${BLOB:-256MiB}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
BLOB_CONNS=${BLOB_CONNS:-4}
MANIFEST_CONNS=${MANIFEST_CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
NODES=${NODES:-256}
MEMORY=${MEMORY:-256MiB}
PORT_BASE=${PORT_BASE:-30400}
PARTS=${PARTS:-serve,memory}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PIN_CONNS=${PIN_CONNS:-64}
FULL_CPU=${FULL_CPU:-0.95}
PIN_LOGS=${PIN_LOGS:-on off}

UP_PORT=$PORT_BASE          # fake upstream for part 1 and 2
CY_PORT=$((PORT_BASE + 1))  # cacheyd for part 1 and 2
NG_PORT=$((PORT_BASE + 2))  # nginx
UP2_PORT=$((PORT_BASE + 3)) # fake upstream of cacheyd-bench, part 3
CY2_PORT=$((PORT_BASE + 4)) # cacheyd for part 3
CDN_PORT=$((PORT_BASE + 5))  # the CDN of the fake upstream for part 1 and 2
CDN2_PORT=$((PORT_BASE + 6)) # the CDN of the fake upstream of part 3

for tool in go nginx wrk curl taskset; do
	command -v "$tool" >/dev/null || { echo "compare.sh: $tool is needed (apt-get install -y nginx wrk curl util-linux)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cacheyd-compare.XXXXXX)
# nginx's workers run as an unprivileged user when started as root: they
# must be able to read the files served.
chmod 0755 "$work"

# The processes this script started and has not stopped yet, by PID.
up_pid='' cy_pid='' ng_pid='' cy2_pid=''
stop() { # stop PID [SIGNAL]
	[[ -n $1 ]] || return 0
	kill "-${2:-TERM}" "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	stop "$cy2_pid"
	stop "$ng_pid" QUIT
	stop "$cy_pid"
	stop "$up_pid"
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# wait_for PID FILE PATTERN: until a line of FILE matches (bounded: 60 s),
# failing at once if process PID has exited.
wait_for() {
	local _
	for _ in $(seq 1 600); do
		if grep -q "$3" "$2" 2>/dev/null; then
			return 0
		fi
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	echo "compare.sh: no '$3' in $2" >&2
	cat "$2" >&2 || true
	exit 1
}

if [[ -n ${CACHEYD:-} ]]; then
	cp "$CACHEYD" "$work/cacheyd"
else
	echo "building cacheyd..." >&2
	go build -o "$work/cacheyd" ./cmd/cacheyd
fi
if [[ -n ${CACHEYD_BENCH:-} ]]; then
	cp "$CACHEYD_BENCH" "$work/cacheyd-bench"
else
	echo "building cacheyd-bench..." >&2
	go build -o "$work/cacheyd-bench" ./cmd/cacheyd-bench
fi
echo "compare/big v1 linux/amd64 $BLOB" >"$work/images.txt"

echo "machine: $(nproc) CPUs, $(go version | cut -d' ' -f3), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(date -u +%Y-%m-%dT%H:%MZ)"

# rate PATH: wrk's Requests/sec line from a saved output.
rate() { awk '/^Requests\/sec:/ {print $2}' "$1"; }

# run_wrk NAME CONNS URL: runs wrk, saves its output, prints requests/s.
run_wrk() {
	wrk -t"$WRK_THREADS" -c"$3" -d"$DURATION" --latency "$4" >"$work/wrk-$1-$2.txt" 2>&1
	rate "$work/wrk-$1-$2.txt"
}

# median: the median of the numbers on standard input.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# start_upstream: starts the fake upstream of parts 1, 2 and 4, seeded with
# one image whose layer is BLOB, and sets manifest_url and blob_url (on
# cacheyd), blob_size and the ns cacheyd is asked for.
start_upstream() {
	"$work/cacheyd-bench" --serve-upstream --upstream-addr "127.0.0.1:$UP_PORT" --upstream-cdn-addr "127.0.0.1:$CDN_PORT" --images "$work/images.txt" \
		--latency 0 --bandwidth 0 --pull-limit 0 >"$work/upstream.txt" 2>&1 &
	up_pid=$!
	wait_for "$up_pid" "$work/upstream.txt" '^blob '
	ns="localhost:$UP_PORT"
	local manifest blob
	manifest=$(awk '$1 == "manifest" {print $3; exit}' "$work/upstream.txt")
	blob=$(awk '$1 == "blob" {print $4, $3}' "$work/upstream.txt" | sort -n | tail -1 | cut -d' ' -f2)
	blob_size=$(awk -v d="$blob" '$1 == "blob" && $3 == d {print $4}' "$work/upstream.txt")
	blob_url="http://127.0.0.1:$CY_PORT/v2/compare/big/blobs/$blob?ns=$ns"
	manifest_url="http://127.0.0.1:$CY_PORT/v2/compare/big/manifests/$manifest?ns=$ns"
}

# start_cacheyd LOGLEVEL [PIN]: (re)starts the cacheyd of part 1, 2 and 4
# with an empty cache directory of its own; with PIN, on CPU SERVER_CPU
# with GOMAXPROCS=1. (A restarted cacheyd serves what its disk holds,
# manifests included, but from disk: only a fill puts content in the
# memory tier.)
start_cacheyd() {
	stop "$cy_pid"
	cy_pid=
	rm -rf "$work/cache"
	local pin=()
	[[ -z ${2:-} ]] || pin=(taskset -c "$SERVER_CPU" env GOMAXPROCS=1)
	# taskset and env exec the command: $! is cacheyd's own PID.
	"${pin[@]}" "$work/cacheyd" --listen "127.0.0.1:$CY_PORT" --cache-dir "$work/cache" --memory-bytes "$MEMORY" \
		--registry-url "localhost:$UP_PORT=http://localhost:$UP_PORT" --allow-registry "localhost:$CDN_PORT" --log-level "$1" \
		>"$work/cacheyd-$1.log" 2>&1 &
	cy_pid=$!
	for _ in $(seq 1 100); do
		curl -fs "http://127.0.0.1:$CY_PORT/healthz" >/dev/null && return 0
		sleep 0.1
	done
	echo "compare.sh: cacheyd did not start" >&2
	exit 1
}

# start_nginx LOG [PIN]: (re)starts nginx serving $work/www, with an access
# log to a file (LOG=on, nginx's default) or none; with PIN, one worker,
# master and worker on CPU SERVER_CPU.
start_nginx() {
	stop "$ng_pid" QUIT
	ng_pid=
	local access="access_log $work/nginx-access.log;" workers=auto pin=()
	[[ $1 == on ]] || access="access_log off;"
	[[ -z ${2:-} ]] || { workers=1; pin=(taskset -c "$SERVER_CPU"); }
	cat >"$work/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	$access
	client_body_temp_path $work/nginx-tmp;
	proxy_temp_path $work/nginx-tmp;
	fastcgi_temp_path $work/nginx-tmp;
	uwsgi_temp_path $work/nginx-tmp;
	scgi_temp_path $work/nginx-tmp;
	server {
		listen 127.0.0.1:$NG_PORT;
		root $work/www;
		default_type application/octet-stream;
	}
}
EOF
	# taskset execs nginx, whose master stays in the foreground
	# (daemon off): $! is the master's PID, and its worker inherits the CPU.
	"${pin[@]}" nginx -e "$work/nginx-error.log" -c "$work/nginx.conf" -p "$work" &
	ng_pid=$!
	for _ in $(seq 1 100); do
		curl -fs -o /dev/null "http://127.0.0.1:$NG_PORT/manifest" && return 0
		sleep 0.1
	done
	echo "compare.sh: nginx did not start" >&2
	cat "$work/nginx-error.log" >&2
	exit 1
}

if [[ $PARTS == *serve* ]]; then
	start_upstream
	mkdir -p "$work/www" "$work/nginx-tmp" && chmod 0755 "$work/www" "$work/nginx-tmp"
	declare -A rps
	for logging in on off; do
		level=info
		[[ $logging == on ]] || level=warn
		start_cacheyd "$level"
		# The first GETs fill cacheyd; nginx gets the very same bytes as files.
		curl -fsS -o "$work/www/blob" "$blob_url"
		curl -fsS -o "$work/www/manifest" "$manifest_url"
		chmod 0644 "$work/www/blob" "$work/www/manifest"
		[[ $(stat -c %s "$work/www/blob") == "$blob_size" ]] || { echo "compare.sh: blob size mismatch" >&2; exit 1; }
		start_nginx "$logging"
		# Warm both (page cache, cacheyd's memory tier) before measuring.
		for _ in 1 2 3; do
			curl -fs -o /dev/null "$blob_url"
			curl -fs -o /dev/null "$manifest_url"
			curl -fs -o /dev/null "http://127.0.0.1:$NG_PORT/blob"
		done
		# Alternate the servers, so that a machine busy for a while hurts
		# both alike, and report each one's median.
		for round in $(seq 1 "$ROUNDS"); do
			run_wrk cacheyd-blob "$logging-$round" "$BLOB_CONNS" "$blob_url" >>"$work/rps-cacheyd-blob-$logging"
			run_wrk nginx-blob "$logging-$round" "$BLOB_CONNS" "http://127.0.0.1:$NG_PORT/blob" >>"$work/rps-nginx-blob-$logging"
			run_wrk cacheyd-manifest "$logging-$round" "$MANIFEST_CONNS" "$manifest_url" >>"$work/rps-cacheyd-manifest-$logging"
			run_wrk nginx-manifest "$logging-$round" "$MANIFEST_CONNS" "http://127.0.0.1:$NG_PORT/manifest" >>"$work/rps-nginx-manifest-$logging"
		done
		for k in cacheyd-blob nginx-blob cacheyd-manifest nginx-manifest; do
			rps[$k-$logging]=$(median <"$work/rps-$k-$logging")
		done
		grep -q 'source=memory' "$work/cacheyd-$level.log" 2>/dev/null || [[ $level != info ]] ||
			echo "compare.sh: cacheyd did not answer the manifest from memory" >&2
	done

	echo
	echo "warm serving on loopback, wrk -t$WRK_THREADS -d$DURATION, median of $ROUNDS alternating runs; blob $blob_size bytes ($BLOB_CONNS connections), manifest $(stat -c %s "$work/www/manifest") bytes ($MANIFEST_CONNS connections)"
	printf '%-28s %16s %16s %8s\n' "" "cacheyd" "nginx" "ratio"
	for logging in on off; do
		label="access log to a file"
		[[ $logging == on ]] || label="no access log"
		cb=$(awk -v r="${rps[cacheyd-blob-$logging]}" -v s="$blob_size" 'BEGIN {printf "%.0f MB/s", r*s/1e6}')
		nb=$(awk -v r="${rps[nginx-blob-$logging]}" -v s="$blob_size" 'BEGIN {printf "%.0f MB/s", r*s/1e6}')
		printf '%-28s %16s %16s %8s\n' "blob, $label" "$cb" "$nb" \
			"$(awk -v a="${rps[cacheyd-blob-$logging]}" -v b="${rps[nginx-blob-$logging]}" 'BEGIN {printf "%.2f", a/b}')"
		printf '%-28s %16s %16s %8s\n' "manifest, $label" "${rps[cacheyd-manifest-$logging]} req/s" "${rps[nginx-manifest-$logging]} req/s" \
			"$(awk -v a="${rps[cacheyd-manifest-$logging]}" -v b="${rps[nginx-manifest-$logging]}" 'BEGIN {printf "%.2f", a/b}')"
	done
	echo "(every run: $work/rps-*; wrk outputs: $work/wrk-*.txt; rerun with KEEP=1 to keep them)"
	stop "$ng_pid" QUIT
	stop "$cy_pid"
	stop "$up_pid"
	ng_pid='' cy_pid='' up_pid=''
fi

# cpu_ticks PID: the CPU time (user and system, in clock ticks) of PID and
# its children (nginx's worker), read from /proc.
cpu_ticks() {
	local p t=0
	for p in "$1" $(pgrep -P "$1" || true); do
		# The fields after the command name, which ends with the last ')':
		# utime and stime are the 12th and 13th of them.
		t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo "$t"
}

# run_wrk_pinned NAME ROUND URL PID: runs wrk with one thread on CPU
# LOAD_CPU, saves its output, and prints requests/s, the share of one CPU
# that server PID used meanwhile and the share wrk used (the server near 1:
# it was the limit; both well below: the machine's other work was).
run_wrk_pinned() {
	local out="$work/wrk-pinned-$1-$2.txt" before after start end wrk_cpu TIMEFORMAT='%U %S'
	before=$(cpu_ticks "$4")
	start=$(date +%s.%N)
	wrk_cpu=$({ time taskset -c "$LOAD_CPU" wrk -t1 -c"$PIN_CONNS" -d"$DURATION" --latency "$3" >"$out" 2>&1; } 2>&1)
	end=$(date +%s.%N)
	after=$(cpu_ticks "$4")
	if grep -q 'Non-2xx\|Socket errors' "$out"; then
		echo "compare.sh: errors in $1 round $2: $(grep 'Non-2xx\|Socket errors' "$out")" >&2
	fi
	echo "$(rate "$out") $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v w="$wrk_cpu" -v s="$start" -v e="$end" \
		'BEGIN {split(w, u, " "); printf "%.2f %.2f", t / hz / (e - s), (u[1] + u[2]) / (e - s)}')"
}

# affinity PID: the CPUs PID and its children may run on.
affinity() {
	local p out=()
	for p in "$1" $(pgrep -P "$1" || true); do
		out+=("$p:$(taskset -cp "$p" | awk '{print $NF}')")
	done
	echo "${out[*]}"
}

if [[ $PARTS == *pinned* ]]; then
	start_upstream
	mkdir -p "$work/www" "$work/nginx-tmp" && chmod 0755 "$work/www" "$work/nginx-tmp"
	echo
	for logging in $PIN_LOGS; do
		level=info
		[[ $logging == on ]] || level=warn
		start_cacheyd "$level" pin
		# The first GET fills cacheyd's memory tier; nginx gets the very
		# same bytes as a file.
		curl -fsS -o "$work/www/manifest" "$manifest_url"
		chmod 0644 "$work/www/manifest"
		start_nginx "$logging" pin
		echo "access log $logging: cacheyd pid:cpus $(affinity "$cy_pid"); nginx master and worker pid:cpus $(affinity "$ng_pid")"
		for _ in 1 2 3; do
			curl -fs -o /dev/null "$manifest_url"
			curl -fs -o /dev/null "http://127.0.0.1:$NG_PORT/manifest"
		done
		: >"$work/pinned-$logging"
		# Within a round the two servers run one after the other, so that
		# a round's ratio is measured under about the same load from
		# elsewhere; which goes first alternates.
		for round in $(seq 1 "$ROUNDS"); do
			if ((round % 2)); then
				c=$(run_wrk_pinned cacheyd "$logging-$round" "$manifest_url" "$cy_pid")
				n=$(run_wrk_pinned nginx "$logging-$round" "http://127.0.0.1:$NG_PORT/manifest" "$ng_pid")
			else
				n=$(run_wrk_pinned nginx "$logging-$round" "http://127.0.0.1:$NG_PORT/manifest" "$ng_pid")
				c=$(run_wrk_pinned cacheyd "$logging-$round" "$manifest_url" "$cy_pid")
			fi
			echo "$c $n" >>"$work/pinned-$logging" # cacheyd: req/s, its CPU, wrk's; nginx: the same
		done
		if [[ $level == info ]] && ! grep -q 'source=memory' "$work/cacheyd-$level.log"; then
			echo "compare.sh: cacheyd did not answer the manifest from memory" >&2
		fi
	done

	echo
	echo "pinned hit path: a warm manifest of $(stat -c %s "$work/www/manifest") bytes, cacheyd from its memory tier (GOMAXPROCS=1) against nginx's static file (1 worker), both on CPU $SERVER_CPU; wrk -t1 -c$PIN_CONNS -d$DURATION on CPU $LOAD_CPU; $ROUNDS rounds, each measuring both servers, cacheyd first in odd rounds"
	# spread: min/median/max of the numbers on standard input.
	spread() { sort -g | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f/%.2f/%.2f", v[1], m, v[NR]}'; }
	printf '%-22s %14s %14s %20s %26s\n' "" "cacheyd req/s" "nginx req/s" "ratio min/med/max" "per CPU-second min/med/max"
	for logging in $PIN_LOGS; do
		label="access log to a file"
		[[ $logging == on ]] || label="no access log"
		f="$work/pinned-$logging"
		printf '%-22s %14s %14s %20s %26s\n' "$label" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f4 "$f" | median)" \
			"$(awk '{print $1 / $4}' "$f" | spread)" "$(awk '$2 > 0 && $5 > 0 {print ($1 / $2) / ($4 / $5)}' "$f" | spread)"
	done
	for logging in $PIN_LOGS; do
		f="$work/pinned-$logging"
		full=$(awk -v m="$FULL_CPU" '$2 >= m && $5 >= m' "$f")
		printf '%-22s %s\n' "log $logging, full CPU" \
			"$(if [[ -n $full ]]; then echo "$(wc -l <<<"$full") rounds where both servers had >= $FULL_CPU of their CPU: ratio $(awk '{print $1 / $4}' <<<"$full" | spread) min/med/max"; else echo "no round where both servers had >= $FULL_CPU of their CPU"; fi)"
	done
	echo "ratio: cacheyd's req/s over nginx's in the same round; per CPU-second: the same for requests per second of the server's own CPU time"
	echo "every round: req/s, the server's share of its CPU, wrk's share of its CPU; cacheyd then nginx; ratio"
	for logging in $PIN_LOGS; do
		awk -v l="$logging" '{printf "  log %-3s round %d:  cacheyd %9.0f %4.2f %4.2f   nginx %9.0f %4.2f %4.2f   %5.3f\n", l, NR, $1, $2, $3, $4, $5, $6, $1 / $4}' "$work/pinned-$logging"
	done
	stop "$ng_pid" QUIT
	stop "$cy_pid"
	stop "$up_pid"
	ng_pid='' cy_pid='' up_pid=''
fi

if [[ $PARTS == *memory* ]]; then
	echo
	echo "resident memory: $NODES clients stream a $BLOB blob through cacheyd (--memory-bytes $MEMORY), cold then warm"
	"$work/cacheyd" --listen "127.0.0.1:$CY2_PORT" --cache-dir "$work/cache2" --memory-bytes "$MEMORY" \
		--registry-url "localhost:$UP2_PORT=http://localhost:$UP2_PORT" --allow-registry "localhost:$CDN2_PORT" --log-level warn \
		>"$work/cacheyd-memory.log" 2>&1 &
	cy2_pid=$!
	for _ in $(seq 1 100); do
		curl -fs "http://127.0.0.1:$CY2_PORT/healthz" >/dev/null && break
		sleep 0.1
	done
	"$work/cacheyd-bench" --no-progress --target "http://127.0.0.1:$CY2_PORT" --target-pid "$cy2_pid" \
		--upstream-addr "127.0.0.1:$UP2_PORT" --upstream-cdn-addr "127.0.0.1:$CDN2_PORT" --images "$work/images.txt" \
		--nodes "$NODES" --scenarios cold,warm
fi
