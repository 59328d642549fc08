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

# ---- 9. push provider fakes (providers.js) ------------------------------------------------

# A throw-away CA and a server certificate for 127.0.0.1 signed by it (EC
# P-256: quick to make); curl trusts that CA only. Plus the keys the engine
# would hold: an RSA key for the FCM service account, a P-256 key for APNs.
command -v openssl >/dev/null || fail "the openssl CLI is needed (Debian: apt-get install -y openssl)"
PV="$WORK/providers"
mkdir -p "$PV"
cat >"$PV/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = impulse test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
printf 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n' >"$PV/srv.ext"
{
  openssl ecparam -name prime256v1 -genkey -noout -out "$PV/ca.key" &&
  openssl req -x509 -new -key "$PV/ca.key" -config "$PV/ca.cnf" -days 2 -out "$PV/ca.pem" &&
  openssl ecparam -name prime256v1 -genkey -noout -out "$PV/srv.key" &&
  openssl req -new -key "$PV/srv.key" -subj /CN=127.0.0.1 -out "$PV/srv.csr" &&
  openssl x509 -req -in "$PV/srv.csr" -CA "$PV/ca.pem" -CAkey "$PV/ca.key" -set_serial 1 -days 2 \
    -extfile "$PV/srv.ext" -out "$PV/srv.pem" &&
  openssl genrsa -out "$PV/fcm.key" 2048 &&
  openssl rsa -in "$PV/fcm.key" -pubout -out "$PV/fcm.pub" &&
  openssl ecparam -name prime256v1 -genkey -noout -out "$PV/apns.key" &&
  openssl ec -in "$PV/apns.key" -pubout -out "$PV/apns.pub"
} >"$WORK/openssl.log" 2>&1 || fail "openssl failed (see openssl.log)"
ok "throw-away CA, a server certificate for IP 127.0.0.1, FCM (RSA) and APNs (P-256) keys"

node providers.js --info "$WORK/prov.json" --cert "$PV/srv.pem" --key "$PV/srv.key" 2>"$WORK/providers.log" &
PROV_PID=$!
PIDS+=("$PROV_PID")
wait_info "$WORK/prov.json" "$PROV_PID"
PROV_INFO=$(cat "$WORK/prov.json")
PH=$(jget "$PROV_INFO" https); PC=$(jget "$PROV_INFO" control)
jcheck "providers info file" "$PROV_INFO" \
  "v.pid === $PROV_PID && /^127\.0\.0\.1:\d+$/.test(v.https) && /^127\.0\.0\.1:\d+$/.test(v.control) && Object.keys(v).length === 3"
jequal "providers /healthz" "$(get "$PC/healthz")" '{"ok":true}'

# An HTTPS request to the fakes over HTTP/2 (curl trusting only the test
# CA), printed as one JSON object
#   {"curl": exit code, "status": N, "http": "2", "headers": {...}, "body": <JSON, else text>}
# usage: hreq METHOD PATH [curl args...]
hreq() {
  local method=$1 path=$2 meta rc=0
  shift 2
  rm -f "$PV/r.body" "$PV/r.hdrs"
  meta=$(curl -sS --http2 --cacert "$PV/ca.pem" -X "$method" -o "$PV/r.body" -D "$PV/r.hdrs" \
    -w '%{http_code} %{http_version}' "$@" "https://$PH$path" 2>/dev/null) || rc=$?
  node -e '
    const fs = require("fs");
    const [rc, meta, bodyFile, hdrFile] = process.argv.slice(1);
    const read = (f) => { try { return fs.readFileSync(f, "utf8"); } catch (e) { return ""; } };
    const [status, http] = (meta || "0 0").split(" ");
    const headers = {};
    for (const line of read(hdrFile).split(/\r?\n/)) {
      const m = /^([^:\s]+):\s*(.*)$/.exec(line);
      if (m) headers[m[1].toLowerCase()] = m[2];
    }
    const text = read(bodyFile);
    let body = text;
    try { body = JSON.parse(text); } catch (e) { /* keep the text */ }
    console.log(JSON.stringify({ curl: Number(rc), status: Number(status), http, headers, body }));' \
    "$rc" "$meta" "$PV/r.body" "$PV/r.hdrs"
}
# A JWT signed here with node's crypto: sign_jwt RS256|ES256 KEY.pem HEADER_JSON CLAIMS_JSON
# (ES256 as JOSE wants it: the raw 64-byte r||s, not DER)
sign_jwt() {
  node -e '
    const crypto = require("crypto");
    const [alg, keyFile, header, claims] = process.argv.slice(1);
    const b64 = (s) => Buffer.from(s).toString("base64url");
    const input = Buffer.from(b64(header) + "." + b64(claims));
    const key = require("fs").readFileSync(keyFile);
    const sig = alg === "ES256" ? crypto.sign("sha256", input, { key, dsaEncoding: "ieee-p1363" }) : crypto.sign("sha256", input, key);
    console.log(input + "." + sig.toString("base64url"));' "$@"
}
# {"publicKeyPem": <the file's text>} for POST /config/fcm|apns
pem_config() { node -e 'console.log(JSON.stringify({ publicKeyPem: require("fs").readFileSync(process.argv[1], "utf8") }))' "$1"; }
JSONCT=(-H 'content-type: application/json')

# -- JPush
JP='{"platform":"all","audience":{"alias":["u1","u2"]},"notification":{"alert":"hi"},"options":{"sendno":7}}'
jcheck "JPush push over HTTP/2: 200 {sendno, msg_id}" "$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d "$JP")" \
  "v.status === 200 && v.http === '2' && v.body.sendno === '7' && /^\d+$/.test(v.body.msg_id)"
jcheck "JPush wrong Basic auth: 401 code 1004" "$(hreq POST /v3/push -u jkey:wrong "${JSONCT[@]}" -d "$JP")" \
  "v.status === 401 && v.body.error.code === 1004 && v.body.error.message === 'Authen failed'"
JP1001=$(node -e 'console.log(JSON.stringify({ platform: "all", notification: { alert: "x" },
  audience: { alias: Array.from({ length: 1001 }, (_, i) => "u" + i) } }))')
jcheck "JPush 1001 aliases: 400 code 1003" "$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d "$JP1001")" \
  "v.status === 400 && v.body.error.code === 1003 && /over 1000/.test(v.body.error.message)"
jcheck "JPush body that is not JSON: 400 code 1003" "$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d '{"platform":')" \
  "v.status === 400 && v.body.error.code === 1003 && /invalid JSON/.test(v.body.error.message)"

# -- faults: a 503 with retry-after exactly `times` times, then normal again
jcheck "POST /faults appends a rule" \
  "$(post "$PC/faults" '[{"provider":"jpush","pathContains":"/v3/push","times":2,"status":503,"headers":{"Retry-After":"2"},"body":{"error":{"code":1000,"message":"busy"}}}]')" \
  "v.length === 1 && v[0].times === 2 && v[0].headers['retry-after'] === '2'"
F1=$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d "$JP")
F2=$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d "$JP")
F3=$(hreq POST /v3/push -u jkey:jsecret "${JSONCT[@]}" -d "$JP")
jcheck "fault 503 + retry-after applied exactly twice" "[$F1,$F2,$F3]" \
  "v.map(r => r.status).join() === '503,503,200' && v[0].headers['retry-after'] === '2' && v[1].headers['retry-after'] === '2'
   && !('retry-after' in v[2].headers) && v[0].body.error.code === 1000 && v[2].body.sendno === '7'"
jcheck "spent rule still listed, applied twice" "$(get "$PC/faults")" "v.length === 1 && v[0].times === 0 && v[0].applied === 2"
JREQS=$(get "$PC/requests?provider=jpush")
jcheck "/requests?provider=jpush: every call in order, faulted ones too" "$JREQS" \
  "v.map(r => r.status).join() === '200,401,400,400,503,503,200' && v.every(r => r.provider === 'jpush' && r.method === 'POST'
     && r.path === '/v3/push' && r.http === '2.0' && typeof r.at === 'number')
   && v[0].headers.authorization === 'Basic ' + Buffer.from('jkey:jsecret').toString('base64')
   && v[0].headers['content-type'] === 'application/json' && v[0].body.options.sendno === 7 && v[0].body.audience.alias.length === 2
   && v[3].body === '{\"platform\":' && v[4].fault === true && v[5].fault === true && !v[6].fault
   && v.every((r, i) => i === 0 || r.at >= v[i - 1].at)"

# -- Getui: auth with sign = sha256(appKey + timestamp + masterSecret), then pushes with the token
TS=$(date +%s%3N)
SIGN=$(printf '%s' "key1${TS}secret1" | sha256sum | cut -d' ' -f1)
R=$(hreq POST /v2/app1/auth "${JSONCT[@]}" -d "{\"sign\":\"$SIGN\",\"timestamp\":\"$TS\",\"appkey\":\"key1\"}")
jcheck "Getui auth with a correct sign: token valid for a day" "$R" \
  "v.status === 200 && v.body.code === 0 && v.body.msg === 'success' && /^gt-\d+$/.test(v.body.data.token)
   && typeof v.body.data.expire_time === 'string' && Math.abs(Number(v.body.data.expire_time) - $TS - 86400000) < 60000"
GT=$(node -pe 'JSON.parse(process.argv[1]).body.data.token' "$R")
jcheck "Getui auth with a wrong sign: code 20001" \
  "$(hreq POST /v2/app1/auth "${JSONCT[@]}" -d "{\"sign\":\"${SIGN:0:63}x\",\"timestamp\":\"$TS\",\"appkey\":\"key1\"}")" \
  "v.status === 200 && v.body.code === 20001 && v.body.msg === 'sign error'"
GS='{"request_id":"req-0000000001","audience":{"alias":["u1"]},"push_message":{"notification":{"title":"t","body":"b","click_type":"startapp"}}}'
jcheck "Getui single alias push with the token" "$(hreq POST /v2/app1/push/single/alias -H "token: $GT" "${JSONCT[@]}" -d "$GS")" \
  "v.status === 200 && v.body.code === 0 && Object.keys(v.body.data).length === 1 && Object.values(v.body.data)[0].u1 === 'successed_online'"
jcheck "Getui push with a wrong token: code 10001" "$(hreq POST /v2/app1/push/single/alias -H 'token: gt-999' "${JSONCT[@]}" -d "$GS")" \
  "v.status === 200 && v.body.code === 10001"
jcheck "Getui request_id shorter than 10: code 20001" \
  "$(hreq POST /v2/app1/push/single/alias -H "token: $GT" "${JSONCT[@]}" -d "${GS/req-0000000001/short}")" \
  "v.body.code === 20001 && /request_id/.test(v.body.msg)"
R=$(hreq POST /v2/app1/push/list/message -H "token: $GT" "${JSONCT[@]}" -d '{"push_message":{"notification":{"title":"t","body":"b","click_type":"startapp"}}}')
jcheck "Getui list/message gives a taskid" "$R" "v.body.code === 0 && /^RASL-\d+$/.test(v.body.data.taskid)"
TASK=$(node -pe 'JSON.parse(process.argv[1]).body.data.taskid' "$R")
jequal "Getui list/alias with that taskid" \
  "$(hreq POST /v2/app1/push/list/alias -H "token: $GT" "${JSONCT[@]}" -d "{\"audience\":{\"alias\":[\"u1\",\"u2\"]},\"taskid\":\"$TASK\",\"is_async\":false}" | node -pe 'JSON.stringify(JSON.parse(require("fs").readFileSync(0)).body)')" \
  '{"code":0,"msg":"","data":{}}'
jcheck "Getui list/alias with an unknown taskid: code 20001" \
  "$(hreq POST /v2/app1/push/list/alias -H "token: $GT" "${JSONCT[@]}" -d '{"audience":{"alias":["u1"]},"taskid":"RASL-x"}')" "v.body.code === 20001"
# a garbage reply scripted for Getui pushes only (auth unaffected)
post "$PC/faults" '{"provider":"getui","pathContains":"/push/","status":200,"body":"<html>oops"}' >/dev/null
jcheck "garbage body fault: raw <html>oops with HTTP 200" "$(hreq POST /v2/app1/push/single/alias -H "token: $GT" "${JSONCT[@]}" -d "$GS")" \
  "v.status === 200 && v.body === '<html>oops' && /text\/html/.test(v.headers['content-type'])"
jcheck "after the garbage: normal again" "$(hreq POST /v2/app1/push/single/alias -H "token: $GT" "${JSONCT[@]}" -d "$GS")" "v.body.code === 0"
jequal "POST /expire-tokens getui" "$(post "$PC/expire-tokens" '{"provider":"getui"}')" '{"expired":1}'
jcheck "expired Getui token: code 10001" "$(hreq POST /v2/app1/push/single/alias -H "token: $GT" "${JSONCT[@]}" -d "$GS")" "v.body.code === 10001"
jequal "DELETE /faults" "$(curl -sS -X DELETE "http://$PC/faults")" '{"cleared":2}'

# -- FCM: exchange an RS256 JWT signed here for an access token, then send
jcheck "POST /config/fcm sets the key; tokenUri defaults to this server" "$(post "$PC/config/fcm" "$(pem_config "$PV/fcm.pub")")" \
  "v.tokenUri === 'https://$PH/token' && v.projectId === 'proj1' && /BEGIN PUBLIC KEY/.test(v.publicKeyPem)"
NOW=$(date +%s)
CLAIMS="{\"iss\":\"impulse@proj1.iam.gserviceaccount.com\",\"scope\":\"https://www.googleapis.com/auth/firebase.messaging\",\"aud\":\"https://$PH/token\",\"iat\":$NOW,\"exp\":$((NOW + 3600))}"
FJWT=$(sign_jwt RS256 "$PV/fcm.key" '{"alg":"RS256","typ":"JWT"}' "$CLAIMS")
GRANT=(--data-urlencode 'grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer')
R=$(hreq POST /token "${GRANT[@]}" --data-urlencode "assertion=$FJWT")
jcheck "FCM token exchange with an RS256 JWT signed here" "$R" \
  "v.status === 200 && /^ya29\.fake-\d+$/.test(v.body.access_token) && v.body.expires_in === 3599 && v.body.token_type === 'Bearer'"
AT=$(node -pe 'JSON.parse(process.argv[1]).body.access_token' "$R")
BADAUD=$(sign_jwt RS256 "$PV/fcm.key" '{"alg":"RS256","typ":"JWT"}' "${CLAIMS/\/token/\/other}")
jcheck "FCM JWT with a wrong aud: 400 invalid_grant" "$(hreq POST /token "${GRANT[@]}" --data-urlencode "assertion=$BADAUD")" \
  "v.status === 400 && v.body.error === 'invalid_grant' && /aud/.test(v.body.error_description)"
jcheck "FCM JWT whose signature is another token's: 400 invalid_grant" \
  "$(hreq POST /token "${GRANT[@]}" --data-urlencode "assertion=${BADAUD%.*}.${FJWT##*.}")" \
  "v.status === 400 && v.body.error === 'invalid_grant' && /Signature/.test(v.body.error_description)"
FM='{"message":{"token":"dev-1","notification":{"title":"t","body":"b"},"data":{"k":"v"}}}'
FSEND=/v1/projects/proj1/messages:send
jcheck "FCM send with the access token" "$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "$FM")" \
  "v.status === 200 && /^projects\/proj1\/messages\/\d+$/.test(v.body.name)"
post "$PC/fcm/unregistered" '["dev-gone"]' >/dev/null
jcheck "FCM unregistered token: 404 UNREGISTERED" "$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "${FM/dev-1/dev-gone}")" \
  "v.status === 404 && v.body.error.status === 'NOT_FOUND' && v.body.error.details[0].errorCode === 'UNREGISTERED'"
jcheck "FCM message without a token: 400 INVALID_ARGUMENT" "$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d '{"message":{}}')" \
  "v.status === 400 && v.body.error.status === 'INVALID_ARGUMENT' && v.body.error.details[0].errorCode === 'INVALID_ARGUMENT'"
post "$PC/faults" '{"provider":"fcm","delayMs":300}' >/dev/null
T0=$(date +%s%N)
jcheck "delay fault: normal answer after the delay" "$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "$FM")" "v.status === 200"
[ $(( ($(date +%s%N) - T0) / 1000000 )) -ge 300 ] || fail "delay fault answered before 300 ms"
# bodyContains: only the message to dev-2 is faulted
post "$PC/faults" '{"provider":"fcm","bodyContains":"\"dev-2\"","status":429,"headers":{"retry-after":"1"}}' >/dev/null
F1=$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "$FM")
F2=$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "${FM/dev-1/dev-2}")
jcheck "bodyContains fault: only the matching body faulted" "[$F1,$F2]" \
  "v[0].status === 200 && v[1].status === 429 && v[1].headers['retry-after'] === '1'"
jequal "POST /expire-tokens fcm" "$(post "$PC/expire-tokens" '{"provider":"fcm"}')" '{"expired":1}'
jcheck "expired access token: 401 UNAUTHENTICATED" "$(hreq POST $FSEND -H "authorization: Bearer $AT" "${JSONCT[@]}" -d "$FM")" \
  "v.status === 401 && v.body.error.status === 'UNAUTHENTICATED'"
jcheck "token exchange recorded with its form fields" "$(get "$PC/requests?provider=fcm-auth")" \
  "v.length === 3 && v[0].body.grant_type === 'urn:ietf:params:oauth:grant-type:jwt-bearer' && v[0].body.assertion === '$FJWT' && v[0].status === 200"

# -- APNs: an ES256 JWT signed here (kid KEY123, iss TEAM123)
post "$PC/config/apns" "$(pem_config "$PV/apns.pub")" >/dev/null
NOW=$(date +%s)
AJWT=$(sign_jwt ES256 "$PV/apns.key" '{"alg":"ES256","kid":"KEY123"}' "{\"iss\":\"TEAM123\",\"iat\":$NOW}")
DEV=$(printf 'ab%.0s' {1..32})
GONE=$(printf 'cd%.0s' {1..32})
APS='{"aps":{"alert":{"title":"t","body":"b"}}}'
AH=(-H 'apns-topic: com.example.app' -H 'apns-push-type: alert' -H 'apns-priority: 10' -H 'apns-expiration: 0' "${JSONCT[@]}")
jcheck "APNs push with an ES256 JWT signed here: 200, empty body, apns-id" \
  "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $AJWT" "${AH[@]}" -d "$APS")" \
  "v.status === 200 && v.http === '2' && v.body === '' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(v.headers['apns-id'])"
post "$PC/apns/unregistered" "[\"$GONE\"]" >/dev/null
jcheck "APNs unregistered token: 410 Unregistered with a timestamp" \
  "$(hreq POST "/3/device/$GONE" -H "authorization: bearer $AJWT" "${AH[@]}" -d "$APS")" \
  "v.status === 410 && v.body.reason === 'Unregistered' && Math.abs(v.body.timestamp - Date.now()) < 60000"
jcheck "APNs wrong topic: 400 TopicDisallowed" \
  "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $AJWT" "${AH[@]}" -H 'apns-topic: com.other' -d "$APS")" \
  "v.status === 400 && v.body.reason === 'TopicDisallowed'"
jequal "one JWT reused: /apns/jwts counts 1" "$(get "$PC/apns/jwts")" "{\"count\":1,\"lastIat\":$NOW}"
OLD=$(sign_jwt ES256 "$PV/apns.key" '{"alg":"ES256","kid":"KEY123"}' "{\"iss\":\"TEAM123\",\"iat\":$((NOW - 3700))}")
jcheck "APNs JWT older than an hour: 403 ExpiredProviderToken" \
  "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $OLD" "${AH[@]}" -d "$APS")" "v.status === 403 && v.body.reason === 'ExpiredProviderToken'"
BADKID=$(sign_jwt ES256 "$PV/apns.key" '{"alg":"ES256","kid":"OTHER"}' "{\"iss\":\"TEAM123\",\"iat\":$NOW}")
jcheck "APNs JWT with another kid: 403 InvalidProviderToken" \
  "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $BADKID" "${AH[@]}" -d "$APS")" "v.status === 403 && v.body.reason === 'InvalidProviderToken'"
post "$PC/faults" '{"provider":"apns","reset":true}' >/dev/null
jcheck "reset fault: RST_STREAM, curl sees the stream closed (exit 92)" \
  "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $AJWT" "${AH[@]}" -d "$APS")" "v.curl === 92"
jcheck "APNs after the reset: 200" "$(hreq POST "/3/device/$DEV" -H "authorization: bearer $AJWT" "${AH[@]}" -d "$APS")" "v.status === 200"
jcheck "/apns/jwts: 3 distinct JWTs seen" "$(get "$PC/apns/jwts")" "v.count === 3"

# -- stats, control errors, shutdown
jcheck "GET /stats per provider" "$(get "$PC/stats")" \
  "v.jpush.requests === 7 && v.jpush.byStatus['503'] === 2 && v.jpush.byStatus['200'] === 2 && v.getui.authCalls === 2
   && v['fcm-auth'].requests === 3 && v.fcm.authCalls === 3 && v.apns.byStatus.reset === 1 && v.apns.byStatus['410'] === 1"
jcheck "control: bad JSON gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '[{' "http://$PC/faults")" "v.s === 400"
jcheck "control: a bad fault rule gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '[{"provider":"nope","status":500}]' "http://$PC/faults")" "v.s === 400"
jcheck "control: an unknown config key gets 400" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' -X POST -d '{"appID":"x"}' "http://$PC/config/getui")" "v.s === 400"
jcheck "control: unknown path gets 404" "$(curl -s -o /dev/null -w '{"s":%{http_code}}' "http://$PC/nope")" "v.s === 404"
jcheck "DELETE /requests" "$(curl -sS -X DELETE "http://$PC/requests")" "v.cleared > 20"
stop "$PROV_PID"
[ "$STOP_RC" = 0 ] || fail "providers.js exited $STOP_RC after SIGTERM"
PIDS=("$ETCD_PID")
ok "SIGTERM: providers.js exited 0"

echo "all $PASSED checks passed"
