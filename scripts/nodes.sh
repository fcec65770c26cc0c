#!/usr/bin/env bash
# Two nodes, one store: node A and node B, each an LMCache server and a vLLM with the connector,
# sharing KV through one Redis via LMCache's own L2 adapter (resp), both registered with LMCache's
# coordinator. A prompt prefilled on A is a hit on B from the store (B's L1 empty before), then the
# other way; then A's LMCache is restarted empty and still hits from the store.
#
# Where the machine allows it (Linux, root, iproute2; REPRO_NODES_NETNS=auto), each node runs in a
# network namespace of its own and Redis and the coordinator in a third, made here and removed at
# the end: one veth pair per node, addresses in REPRO_NODES_SUBNET (a /16) that exist only inside
# those namespaces, one route per node (to the store's address); nothing leaves the machine. Each
# node's servers bind their own namespace's 127.0.0.1. Otherwise both nodes share this machine's
# loopback, node B on ports + REPRO_NODES_PORT_OFFSET (said so at the start).
# Records results/runs/<UTC>-nodes/nodes.json (steps, hits, load times, store, coordinator views).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
require_env
"$REPRO" preflight nodes # every knob, before any server starts

NAMESPACES=() SCRIPTS=()
new_run nodes 'stop_scripts; remove_namespaces; rm -rf -- "$REPRO_REDIS_DIR/${run_dir##*/}"'

# --- the network -------------------------------------------------------------------------
can_netns() {
  [[ $(uname -s) == Linux && $EUID == 0 ]] && command -v ip >/dev/null || return 1
  ip netns add "repro-$$-probe" 2>/dev/null || return 1
  ip netns del "repro-$$-probe"
}

# Namespaces of earlier runs whose script is gone (killed with SIGKILL): removed first.
remove_stale_namespaces() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^repro-[0-9]+-' || true); do
    pid=${ns#repro-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    ip netns del "$ns" && echo "nodes: removed the stale network namespace $ns"
  done
}

add_namespace() {
  ip netns add "$1"
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
}

remove_namespaces() {
  local ns
  for ns in ${NAMESPACES[@]+"${NAMESPACES[@]}"}; do
    ip netns del "$ns" 2>/dev/null && echo "nodes: removed network namespace $ns"
  done
  NAMESPACES=()
}

# make_network: the store namespace (its address on its loopback) and one linked namespace per
# node, each with a veth pair to the store and a route to the store's address only.
make_network() {
  local net=$REPRO_NODES_SUBNET i=1 node
  STORE_NS="repro-$$-store"
  STORE_IP="$net.0.1"
  add_namespace "$STORE_NS"
  ip -n "$STORE_NS" addr add "$STORE_IP/32" dev lo
  for node in a b; do
    local ns="repro-$$-$node" outer="rs$$$node" inner="rn$$$node"
    add_namespace "$ns"
    ip link add "$outer" netns "$STORE_NS" type veth peer name "$inner" netns "$ns"
    ip -n "$STORE_NS" addr add "$net.$i.1/24" dev "$outer"
    ip -n "$ns" addr add "$net.$i.2/24" dev "$inner"
    ip -n "$STORE_NS" link set "$outer" up
    ip -n "$ns" link set "$inner" up
    ip -n "$ns" route add "$STORE_IP/32" via "$net.$i.1"
    printf -v "NS_${node^^}" '%s' "$ns"
    printf -v "IP_${node^^}" '%s' "$net.$i.2"
    i=$((i + 1))
  done
}

# --- the servers: each start script in the background, its output in logs/ ------------------
# start NAME ENV...: run scripts/start_<kind>.sh (kind: NAME's first word) with ENV; sets PID_<NAME>.
start() {
  local name=$1 kind=${1%%-*} out="$REPRO_LOG_DIR/$1.out"
  shift
  env "$@" "$REPO_ROOT/scripts/start_$kind.sh" >"$out" 2>&1 </dev/null &
  SCRIPTS+=("$!")
  printf -v "PID_${name//-/_}" '%s' "$!"
  echo "nodes: $name started (script pid $!, output $out)"
}

# await NAME TIMEOUT: until NAME's script says it is serving; its output's tail if it dies first.
await() {
  local name=$1 timeout=$2 out="$REPRO_LOG_DIR/$1.out" pid_var="PID_${1//-/_}" start=$SECONDS
  local pid=${!pid_var}
  until grep -q "^$(basename "${name%%-*}"): serving" "$out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$out" >&2
      die "$name stopped before it was serving (output: $out)"
    fi
    ((SECONDS - start < timeout)) || { tail -n 30 "$out" >&2; die "$name not serving after $timeout s (output: $out)"; }
    sleep 0.5
  done
  echo "nodes: $name serving after $((SECONDS - start)) s"
}

# stop NAME: SIGTERM its script, which stops its server (by PID) and cleans up; wait for it.
stop() {
  local pid_var="PID_${1//-/_}"
  local pid=${!pid_var:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf -v "$pid_var" '%s' ""
  local kept=() p
  for p in "${SCRIPTS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  SCRIPTS=(${kept[@]+"${kept[@]}"})
}

stop_scripts() {
  local i
  for ((i = ${#SCRIPTS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${SCRIPTS[i]}" 2>/dev/null || true
    wait "${SCRIPTS[i]}" 2>/dev/null || true
  done
  SCRIPTS=()
}

# node_env NODE: the knobs of node NODE's servers (array NODE_ENV).
node_env() {
  local ns_var="NS_${1^^}" offset=0
  NODE_ENV=(REPRO_L2=redis REPRO_L2_PREFETCH_POLICY="$REPRO_NODES_L2_PREFETCH_POLICY" REPRO_LMCACHE_INSTANCE_ID="node-$1"
    REPRO_COORDINATOR_URL="$COORDINATOR_URL" REPRO_STORE_HOST="$STORE_IP" REPRO_NETNS="${!ns_var}"
    REPRO_LOG_DIR="$REPRO_LOG_DIR/node-$1")
  [[ $MODE == netns || $1 == a ]] || offset=$REPRO_NODES_PORT_OFFSET
  NODE_ENV+=(REPRO_LMCACHE_PORT=$((REPRO_LMCACHE_PORT + offset)) REPRO_LMCACHE_HTTP_PORT=$((REPRO_LMCACHE_HTTP_PORT + offset))
    REPRO_VLLM_PORT=$((REPRO_VLLM_PORT + offset)))
  NODE_SPEC="$1,${!ns_var:--},$((REPRO_LMCACHE_PORT + offset)),$((REPRO_LMCACHE_HTTP_PORT + offset)),$((REPRO_VLLM_PORT + offset))"
}

# --- the run -----------------------------------------------------------------------------
if [[ $REPRO_NODES_NETNS != off ]] && can_netns; then
  MODE=netns
  remove_stale_namespaces
  make_network
  TOPOLOGY="network namespaces: store $STORE_NS ($STORE_IP), node A $NS_A ($IP_A), node B $NS_B ($IP_B), one veth pair per node"
else
  [[ $REPRO_NODES_NETNS != on ]] || die "REPRO_NODES_NETNS=on, but this machine cannot make network namespaces (Linux, root and iproute2 needed)"
  MODE=loopback STORE_NS="" NS_A="" NS_B="" STORE_IP=$REPRO_HOST
  TOPOLOGY="one loopback: node B on ports + $REPRO_NODES_PORT_OFFSET (no network namespaces here: Linux, root and iproute2 needed)"
fi
echo "nodes: $TOPOLOGY"
COORDINATOR_URL="http://$STORE_IP:$REPRO_COORDINATOR_PORT"
mkdir -p "$REPRO_LOG_DIR"/node-{a,b}

store_env=(REPRO_NETNS="$STORE_NS" REPRO_STORE_HOST="$STORE_IP" REPRO_LOG_DIR="$REPRO_LOG_DIR"
  REPRO_REDIS_DIR="$REPRO_REDIS_DIR/${run_dir##*/}")
start redis "${store_env[@]}"
start coordinator "${store_env[@]}"
await redis 60
await coordinator "$REPRO_LMCACHE_READY_TIMEOUT"
for node in a b; do
  node_env "$node"
  start "lmcache-$node" "${NODE_ENV[@]}"
  await "lmcache-$node" "$REPRO_LMCACHE_READY_TIMEOUT"
  start "vllm-$node" "${NODE_ENV[@]}"
  await "vllm-$node" "$REPRO_VLLM_READY_TIMEOUT"
done
node_env a
SPEC_A=$NODE_SPEC
node_env b
SPEC_B=$NODE_SPEC

echo "=== A to B and back, through the store"
REPRO_STORE_HOST=$STORE_IP "$REPRO" nodes share --run-dir "$run_dir" --node "$SPEC_A" --node "$SPEC_B" --coordinator "$COORDINATOR_URL" --topology "$TOPOLOGY"
echo "=== node A's LMCache restarted empty"
stop lmcache-a
node_env a
start lmcache-a "${NODE_ENV[@]}"
await lmcache-a "$REPRO_LMCACHE_READY_TIMEOUT"
REPRO_STORE_HOST=$STORE_IP "$REPRO" nodes restart --run-dir "$run_dir" --node "$SPEC_A" --coordinator "$COORDINATOR_URL" --topology "$TOPOLOGY"
