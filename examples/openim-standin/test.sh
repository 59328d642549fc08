#!/usr/bin/env bash
# End-to-end test of the OpenIM stand-in against a real etcd:
#   1. start etcd 3.4 on free loopback ports (throw-away data dir);
#   2. start two gateways (default lease TTL, and a 3 s lease) and the services;
#   3. check the etcd keys and their exact values;
#   4. push through a gateway with grpc-js (standin-client.js) and check
#      the reply, the recorded push, and the error/garbage/slow modes;
#   5. check the services: online paging (3 users, page size 2), statuses,
#      groups (1004 when unknown), dismissGroup, max seq, offline filter,
#      recorded calls, a bad control request answered 400;
#   6. revoke a gateway's lease behind its back and see it register again;
#   7. a gateway facing an unreachable etcd gives up with exit 1;
#   8. SIGTERM everything: exit 0 and the etcd keys are gone.
# Exits non-zero on the first failure, printing the processes' logs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
export ETCDCTL_API=3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/standin-test.XXXXXX")
PIDS=()          # every process this script started, to stop on exit
PASSED=0

# ---- helpers ---------------------------------------------------------------------

cleanup() {
  local rc=$?
  # Newest first, so the stand-ins can still revoke their leases in etcd.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      echo "---- $(basename "$f") (last 40 lines)"
      tail -n 40 "$f"
    done
    echo "FAILED ($PASSED checks passed before the failure)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "not ok - line $LINENO failed: $BASH_COMMAND"' ERR

fail() { echo "not ok - $*"; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }

# Free loopback TCP ports: bind N sockets on port 0 at once (so they
# differ), print their ports, close them.
free_ports() {
  node -e '
    const net = require("net"); const n = Number(process.argv[1]); const ss = [];
    const next = () => { if (ss.length === n) { console.log(ss.map(s => s.address().port).join(" ")); ss.forEach(s => s.close()); return; }
      const s = net.createServer(); s.listen(0, "127.0.0.1", () => { ss.push(s); next(); }); };
    next();' "$1"
}

# Poll until a command succeeds, for at most $1 seconds.
poll() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# Wait for a stand-in's info file; fail early if the process died.
wait_info() {
  local file=$1 pid=$2 end=$((SECONDS + 30))
  until [ -s "$file" ]; do
    kill -0 "$pid" 2>/dev/null || fail "process $pid exited before writing $file"
    [ "$SECONDS" -lt "$end" ] || fail "no $file after 30 s"
    sleep 0.05
  done
}

# A field of a JSON document: jget '<json>' field
jget() { node -e 'const v = JSON.parse(process.argv[1]); console.log(v[process.argv[2]])' "$1" "$2"; }

# Check a JavaScript condition on a JSON value `v`: jcheck DESC JSON EXPR
jcheck() {
  local desc=$1 json=$2 expr=$3
  node -e "const v = JSON.parse(process.argv[1]); if (!($expr)) process.exit(1)" "$json" \
    || fail "$desc: condition [$expr] false for: $json"
  ok "$desc"
}

# Deep equality of two JSON documents (key order ignored): jequal DESC ACTUAL EXPECTED
jequal() {
  node -e 'require("assert").deepStrictEqual(JSON.parse(process.argv[1]), JSON.parse(process.argv[2]))' "$2" "$3" \
    2>/dev/null || fail "$1: got $2, expected $3"
  ok "$1"
}

# POST a JSON body to a control server, print the reply body.
post() { curl -sS -X POST -H 'content-type: application/json' -d "$2" "http://$1"; }
get() { curl -sS "http://$1"; }

# gRPC calls through grpc-js; a gRPC error prints {"code","details"} and
# returns 3, which `|| true` keeps from ending the script.
rpc() { node standin-client.js call "$@" || true; }
push() { node standin-client.js push "$@" || true; }

# SIGTERM a child process and wait for it (at most 10 s); its exit code
# goes to STOP_RC (no command substitution: `wait` needs this shell).
stop() {
  local pid=$1 end=$((SECONDS + 10))
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$end" ] || fail "process $pid still running 10 s after SIGTERM"
    sleep 0.05
  done
  STOP_RC=0
  wait "$pid" || STOP_RC=$?
}

etcd_get() { etcdctl --endpoints "$ETCD" get --prefix "$@"; }

# ---- 0. prerequisites ----------------------------------------------------------------

command -v etcd >/dev/null && command -v etcdctl >/dev/null \
  || fail "etcd and etcdctl are needed (Debian: apt-get install -y etcd-server etcd-client)"
if [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/@grpc/proto-loader ]; then
  npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1 || fail "npm ci failed (see npm.log)"
fi

# ---- 1. etcd -----------------------------------------------------------------------------

read -r CPORT PPORT < <(free_ports 2)
ETCD="http://127.0.0.1:$CPORT"
etcd --name t --data-dir "$WORK/etcd-data" \
  --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
  --initial-cluster "t=http://127.0.0.1:$PPORT" >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
poll 30 etcdctl --endpoints "$ETCD" endpoint health || fail "etcd not healthy after 30 s"
ok "etcd healthy on $ETCD"

# ---- 2. stand-ins ----------------------------------------------------------------------------

node standin.js gateway --etcd "$ETCD" --root openim --service messageGateway \
  --info "$WORK/gw1.json" 2>"$WORK/gw1.log" &
GW1_PID=$!
PIDS+=("$GW1_PID")
node standin.js gateway --etcd "$ETCD" --root openim --service messageGateway --lease-ttl 3 \
  --info "$WORK/gw2.json" 2>"$WORK/gw2.log" &
GW2_PID=$!
PIDS+=("$GW2_PID")
node standin.js services --etcd "$ETCD" --root openim --page-size 2 \
  --info "$WORK/svc.json" 2>"$WORK/svc.log" &
SVC_PID=$!
PIDS+=("$SVC_PID")
wait_info "$WORK/gw1.json" "$GW1_PID"
wait_info "$WORK/gw2.json" "$GW2_PID"
GW2_READY=$SECONDS
wait_info "$WORK/svc.json" "$SVC_PID"

GW1_INFO=$(cat "$WORK/gw1.json")
GW2_INFO=$(cat "$WORK/gw2.json")
SVC_INFO=$(cat "$WORK/svc.json")
GW1=$(jget "$GW1_INFO" grpc); GW1C=$(jget "$GW1_INFO" control)
GW2=$(jget "$GW2_INFO" grpc); GW2C=$(jget "$GW2_INFO" control)
SVC=$(jget "$SVC_INFO" grpc); SVCC=$(jget "$SVC_INFO" control)
jcheck "gateway info file" "$GW1_INFO" \
  "v.pid === $GW1_PID && /^127\.0\.0\.1:\d+$/.test(v.grpc) && /^127\.0\.0\.1:\d+$/.test(v.control) && v.key === 'openim/messageGateway/' + v.grpc && Object.keys(v).length === 4"
jcheck "services info file" "$SVC_INFO" \
  "v.pid === $SVC_PID && /^127\.0\.0\.1:\d+$/.test(v.grpc) && /^127\.0\.0\.1:\d+$/.test(v.control) && Object.keys(v).length === 3"

# ---- 3. etcd registrations: exact keys and values ------------------------------------

val() { printf '{"Op":0,"Addr":"%s","Metadata":null}' "$1"; }
EXPECTED=$(
  {
    for a in "$GW1" "$GW2"; do printf 'openim/messageGateway/%s\n%s\n' "$a" "$(val "$a")"; done
    for s in conversation group msg user; do printf 'openim/%s/%s\n%s\n' "$s" "$SVC" "$(val "$SVC")"; done
  } | paste - - | sort | tr '\t' '\n'
)
ACTUAL=$(etcd_get openim/ | paste - - | sort | tr '\t' '\n')
[ "$ACTUAL" = "$EXPECTED" ] || fail "etcd keys: got
$ACTUAL
expected
$EXPECTED"
ok "etcd holds exactly the 6 expected keys and values"
# The lease ID of a key, in hex as etcdctl's lease commands want it (read
# from the raw JSON text: the int64 would lose precision in JSON.parse).
lease_of() {
  etcdctl --endpoints "$ETCD" get "$1" -w json \
    | node -e 'const m = /"lease":(\d+)/.exec(require("fs").readFileSync(0, "utf8")); console.log(m ? BigInt(m[1]).toString(16) : "")'
}
GW1_LEASE=$(lease_of "openim/messageGateway/$GW1")
[ -n "$GW1_LEASE" ] || fail "gateway key has no lease"
TTL_OUT=$(etcdctl --endpoints "$ETCD" lease timetolive "$GW1_LEASE")
echo "$TTL_OUT" | grep -q 'granted with TTL(30s)' || fail "gateway lease not 30 s: $TTL_OUT"
ok "gateway key is under a 30 s lease"

# ---- 4. gateway -----------------------------------------------------------------------

jequal "POST /conns merges" "$(post "$GW1C/conns" '{"u1":[1,5],"u2":[5],"u3":[2],"gone":[1]}')" \
  '{"u1":[1,5],"u2":[5],"u3":[2],"gone":[1]}'
jequal "POST /conns empty list removes" "$(post "$GW1C/conns" '{"gone":[]}')" '{"u1":[1,5],"u2":[5],"u3":[2]}'
REQ='{"msgData":{"sendID":"s1","groupID":"g1","clientMsgID":"c1","sessionType":3,"contentType":101,"content":"héllo","seq":"9007199254740993","sendTime":"1700000000000","options":{"offlinePush":false},"offlinePushInfo":{"title":"T"}},"pushToUserIDs":["u1","u2","u3","u4"]}'
MD='{"operationid":"op-1","opuserid":"s1","platform":"1","connid":"conn-1"}'
REPLY=$(push "$GW1" "$REQ" --metadata "$MD")
jequal "gateway reply: one result per user, onlinePush only for iOS/Android" "$REPLY" '{"singlePushResult":[
  {"userID":"u1","onlinePush":true,"resp":[{"ResultCode":"0","RecvID":"u1","RecvPlatFormID":1},{"ResultCode":"0","RecvID":"u1","RecvPlatFormID":5}]},
  {"userID":"u2","onlinePush":false,"resp":[{"ResultCode":"0","RecvID":"u2","RecvPlatFormID":5}]},
  {"userID":"u3","onlinePush":true,"resp":[{"ResultCode":"0","RecvID":"u3","RecvPlatFormID":2}]},
  {"userID":"u4","onlinePush":false,"resp":[]}]}'
jequal "the other gateway holds nobody" "$(push "$GW2" '{"pushToUserIDs":["u1"]}')" \
  '{"singlePushResult":[{"userID":"u1","onlinePush":false,"resp":[]}]}'
PUSHES=$(get "$GW1C/pushes")
jcheck "push recorded with metadata and MsgData" "$PUSHES" \
  "v.length === 1 && v[0].metadata.operationid === 'op-1' && v[0].metadata.opuserid === 's1' && v[0].metadata.platform === '1' && v[0].metadata.connid === 'conn-1'
   && JSON.stringify(v[0].pushToUserIDs) === '[\"u1\",\"u2\",\"u3\",\"u4\"]' && v[0].msgData.content === 'héllo'
   && v[0].msgData.contentBase64 === Buffer.from('héllo').toString('base64') && v[0].msgData.seq === '9007199254740993'
   && v[0].msgData.options.offlinePush === false && v[0].msgData.offlinePushInfo.title === 'T' && v[0].msgData.sessionType === 3
   && typeof v[0].at === 'number' && typeof v[0].raw === 'string'"
post "$GW1C/mode" '{"mode":"error"}' >/dev/null
jequal "error mode: INTERNAL by default" "$(push "$GW1" '{"pushToUserIDs":["u1"]}' | node -pe 'JSON.stringify({code: JSON.parse(require("fs").readFileSync(0)).code})')" '{"code":13}'
post "$GW1C/mode" '{"mode":"error","code":14}' >/dev/null
jcheck "error mode: chosen code" "$(push "$GW1" '{"pushToUserIDs":["u1"]}')" "v.code === 14"
post "$GW1C/mode" '{"mode":"garbage"}' >/dev/null
jcheck "garbage mode: the client cannot parse the reply" "$(push "$GW1" '{"pushToUserIDs":["u1"]}')" \
  "v.code === 13 && /pars/i.test(v.details)"
post "$GW1C/mode" '{"mode":"slow","delayMs":400}' >/dev/null
jcheck "slow mode: a 200 ms deadline expires" "$(push "$GW1" '{"pushToUserIDs":["u1"]}' --timeout 200)" "v.code === 4"
T0=$(date +%s%N)
jcheck "slow mode: answers normally after the delay" "$(push "$GW1" '{"pushToUserIDs":["u3"]}')" \
  "v.singlePushResult[0].onlinePush === true"
[ $(( ($(date +%s%N) - T0) / 1000000 )) -ge 400 ] || fail "slow mode answered before 400 ms"
post "$GW1C/mode" '{"mode":"ok"}' >/dev/null
jcheck "every push recorded in every mode" "$(get "$GW1C/pushes")" "v.length === 6"
jcheck "bad control body gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '{"u1":"x"}' "http://$GW1C/conns")" "v.s === 400"
jcheck "bad mode gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '{"mode":"nope"}' "http://$GW1C/mode")" "v.s === 400"
jequal "POST /reset clears pushes" "$(post "$GW1C/reset" '')" '{"cleared":6}'
jcheck "pushes empty after reset" "$(get "$GW1C/pushes")" "v.length === 0"

# ---- 5. services ----------------------------------------------------------------------------

post "$SVCC/online" '{"u3":[5],"u1":[2,1],"u2":[1],"u4":[1]}' >/dev/null
jequal "POST /online: empty list = offline" "$(post "$SVCC/online" '{"u4":[]}')" '{"u1":[1,2],"u2":[1],"u3":[5]}'
P1=$(rpc "$SVC" /openim.user.user/getAllOnlineUsers '{"cursor":"0"}' --metadata '{"operationid":"op-page1"}')
jcheck "getAllOnlineUsers page 1: 2 users, nonzero cursor" "$P1" \
  "v.statusList.length === 2 && v.nextCursor !== '0' && v.statusList.every(s => s.status === 1 && s.platformIDs.length > 0)"
P2=$(rpc "$SVC" /openim.user.user/getAllOnlineUsers "{\"cursor\":\"$(jget "$P1" nextCursor)\"}")
jcheck "getAllOnlineUsers page 2: 1 user, cursor 0" "$P2" "v.statusList.length === 1 && v.nextCursor === '0'"
jequal "the pages hold the 3 users with their platforms" \
  "$(node -pe 'JSON.stringify([...JSON.parse(process.argv[1]).statusList, ...JSON.parse(process.argv[2]).statusList].map(s => [s.userID, s.platformIDs]).sort())' "$P1" "$P2")" \
  '[["u1",[1,2]],["u2",[1]],["u3",[5]]]'
jequal "getUserStatus" "$(rpc "$SVC" /openim.user.user/getUserStatus '{"userID":"admin","userIDs":["u1","u9"]}')" \
  '{"statusList":[{"userID":"u1","status":1,"platformIDs":[1,2]},{"userID":"u9","status":0,"platformIDs":[]}]}'
post "$SVCC/groups" '{"g1":["u1","u2","u3"]}' >/dev/null
jequal "getGroupMemberUserIDs" "$(rpc "$SVC" /openim.group.group/getGroupMemberUserIDs '{"groupID":"g1"}')" '{"userIDs":["u1","u2","u3"]}'
jequal "getGroupMemberUserIDs unknown group: 1004" "$(rpc "$SVC" /openim.group.group/getGroupMemberUserIDs '{"groupID":"nope"}')" \
  '{"code":1004,"details":"record not found"}'
jequal "dismissGroup" "$(rpc "$SVC" /openim.group.group/dismissGroup '{"groupID":"g1","deleteMember":true}' --metadata '{"operationid":"op-d","opuserid":"imAdmin"}')" '{}'
jcheck "dismissed group is gone" "$(rpc "$SVC" /openim.group.group/getGroupMemberUserIDs '{"groupID":"g1"}')" "v.code === 1004"
jcheck "dismissing an unknown group: 1004" "$(rpc "$SVC" /openim.group.group/dismissGroup '{"groupID":"g1"}')" "v.code === 1004"
post "$SVCC/maxseq" '{"sg_g1":42}' >/dev/null
jequal "GetConversationMaxSeq" "$(rpc "$SVC" /openim.msg.msg/GetConversationMaxSeq '{"conversationID":"sg_g1"}')" '{"maxSeq":"42"}'
jequal "GetConversationMaxSeq unknown: 0" "$(rpc "$SVC" /openim.msg.msg/GetConversationMaxSeq '{"conversationID":"sg_x"}')" '{"maxSeq":"0"}'
post "$SVCC/offlinepush" '{"sg_g1":["u3"]}' >/dev/null
jequal "GetConversationOfflinePushUserIDs drops muted users" \
  "$(rpc "$SVC" /openim.conversation.conversation/GetConversationOfflinePushUserIDs '{"conversationID":"sg_g1","userIDs":["u1","u3","u4"]}')" \
  '{"userIDs":["u1","u4"]}'
jequal "GetConversationOfflinePushUserIDs default: all" \
  "$(rpc "$SVC" /openim.conversation.conversation/GetConversationOfflinePushUserIDs '{"conversationID":"sg_g2","userIDs":["u1","u3"]}')" \
  '{"userIDs":["u1","u3"]}'
jequal "SetConversationMaxSeq" \
  "$(rpc "$SVC" /openim.conversation.conversation/SetConversationMaxSeq '{"conversationID":"sg_g1","ownerUserID":["u2"],"maxSeq":"42"}')" '{}'
jcheck "SetConversationMaxSeq kept in /state" "$(get "$SVCC/state")" "v.conversationMaxSeq.sg_g1.u2 === '42'"
post "$SVCC/mode" '{"method":"/openim.user.user/getUserStatus","mode":"error","code":14}' >/dev/null
jcheck "per-method error mode" "$(rpc "$SVC" /openim.user.user/getUserStatus '{"userIDs":["u1"]}')" "v.code === 14"
jcheck "other methods unaffected" "$(rpc "$SVC" /openim.msg.msg/GetConversationMaxSeq '{"conversationID":"sg_g1"}')" "v.maxSeq === '42'"
post "$SVCC/mode" '{"method":"*","mode":"garbage"}' >/dev/null
jcheck "garbage mode for every method" "$(rpc "$SVC" /openim.msg.msg/GetConversationMaxSeq '{"conversationID":"sg_g1"}')" "v.code === 13"
post "$SVCC/mode" '{"method":"*","mode":"ok"}' >/dev/null
jcheck "bad /mode method gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '{"method":"/x/y","mode":"ok"}' "http://$SVCC/mode")" "v.s === 400"
jcheck "bad /groups body gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '[1]' "http://$SVCC/groups")" "v.s === 400"
CALLS=$(get "$SVCC/calls")
jcheck "calls recorded in order with method, metadata, request" "$CALLS" \
  "v.length === 16 && v[0].method === '/openim.user.user/getAllOnlineUsers' && v[0].metadata.operationid === 'op-page1' && v[0].request.cursor === '0'
   && v[5].method === '/openim.group.group/dismissGroup' && v[5].request.deleteMember === true && v[5].metadata.opuserid === 'imAdmin'
   && v.every((c, i) => i === 0 || c.at >= v[i - 1].at)"
jcheck "POST /reset clears calls, keeps state" "$(post "$SVCC/reset" '' >/dev/null; get "$SVCC/calls")" "v.length === 0"
jcheck "state kept after reset" "$(get "$SVCC/state")" "v.maxseq.sg_g1 === '42'"

# ---- 6. keepalive, and a lost lease is replaced ----------------------------------------------

# The 3 s lease must outlive 5 s through keepalives (sections 4-5 usually
# take longer than that already; otherwise wait out the difference).
while [ $((SECONDS - GW2_READY)) -lt 5 ]; do sleep 0.2; done
[ "$(etcd_get "openim/messageGateway/$GW2" --print-value-only)" = "$(val "$GW2")" ] \
  || fail "3 s lease not kept alive: key gone after $((SECONDS - GW2_READY)) s"
ok "a 3 s lease is kept alive ($((SECONDS - GW2_READY)) s and counting)"

GW2_LEASE=$(lease_of "openim/messageGateway/$GW2")
etcdctl --endpoints "$ETCD" lease revoke "$GW2_LEASE" >/dev/null
# The key goes with the lease; the stand-in may already have put it back
# under a new lease by the time we look (its keepalive runs every second),
# so what must hold is: absent, or present under another lease.
NOW_LEASE=$(lease_of "openim/messageGateway/$GW2")
[ -z "$NOW_LEASE" ] || [ "$NOW_LEASE" != "$GW2_LEASE" ] || fail "key still there under the revoked lease"
key_back() { [ "$(etcd_get "openim/messageGateway/$GW2" --print-value-only)" = "$(val "$GW2")" ] &&
             [ "$(lease_of "openim/messageGateway/$GW2")" != "$GW2_LEASE" ]; }
poll 10 key_back || fail "gateway did not register again after its lease was revoked"
ok "gateway re-registered after its lease was revoked"

# ---- 7. unreachable etcd --------------------------------------------------------------------

read -r DEAD < <(free_ports 1)
RC=0
node standin.js gateway --etcd "http://127.0.0.1:$DEAD" --etcd-timeout 1 --info "$WORK/dead.json" 2>"$WORK/dead.log" || RC=$?
[ "$RC" -eq 1 ] || fail "unreachable etcd: exit $RC, expected 1"
grep -q 'giving up on etcd' "$WORK/dead.log" || fail "unreachable etcd: no clear message"
[ ! -e "$WORK/dead.json" ] || fail "unreachable etcd: info file written"
ok "unreachable etcd: exit 1 with '$(grep -o 'giving up on etcd[^:]*' "$WORK/dead.log")'"

# ---- 8. SIGTERM: exit 0, keys gone --------------------------------------------------------

for p in "$GW1_PID" "$GW2_PID" "$SVC_PID"; do
  stop "$p"
  [ "$STOP_RC" = 0 ] || fail "process $p exited $STOP_RC after SIGTERM"
done
PIDS=("$ETCD_PID")
ok "SIGTERM: all stand-ins exited 0"
[ -z "$(etcd_get openim/ --keys-only)" ] || fail "keys left in etcd: $(etcd_get openim/ --keys-only)"
ok "etcd keys revoked on shutdown"

echo "all $PASSED checks passed"
