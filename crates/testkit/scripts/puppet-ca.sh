#!/bin/bash
# A private Puppet CA for tests, from Debian's puppetserver 7.9.5 (or plain openssl).
#
#   puppet-ca.sh [init] [NAME...]   fresh CA in $CA_DIR + a cert/key per NAME (default node1.example)
#   puppet-ca.sh generate NAME...   more certs from the existing CA
#   puppet-ca.sh revoke NAME...     revoke (openssl mode only): rewrites ca_crl.pem and crl.pem
#   puppet-ca.sh server-start       run puppetserver on https://127.0.0.1:$CA_PORT (background, PID file)
#   puppet-ca.sh server-stop        stop it by PID
#
# Env:
#   CA_DIR        default ${TMPDIR:-/tmp}/muster-puppet-ca
#   CA_MODE       server  (default) puppetserver runs on 127.0.0.1 only while certs are signed:
#                           normal agent certs, exactly what `puppet agent` gets
#                 offline  no JVM: `puppetserver ca generate --ca-client --force`; certs also
#                           carry pp_cli_auth=true (CA-admin extension), ttl 15y
#                 openssl  no puppet at all: same file layout made with openssl
#   CA_KEYLENGTH  RSA bits, default 4096 (Puppet's default); 2048 is ~10x faster
#   CA_PORT       default 18140      CA_SERVER_NAME default puppet.test
#   CA_READABLE   1 = chmod a+rX the tree afterwards (files are puppet:puppet 0640 when run as root)
#   CA_INSTALL    1 (default) = apt-get install puppetserver if missing (root; not in openssl mode)
#
# Layout (all modes):  $CA_DIR/etc/ssl/certs/ca.pem            CA chain (intermediate + root)
#                      $CA_DIR/etc/ssl/certs/NAME.pem           node cert
#                      $CA_DIR/etc/ssl/private_keys/NAME.pem    node key (PKCS#1 "RSA PRIVATE KEY")
#                      $CA_DIR/etc/ssl/public_keys/NAME.pem     $CA_DIR/etc/ssl/crl.pem
#                      $CA_DIR/etc/ca/{ca_crt,ca_key,root_key,ca_crl,...}.pem, signed/NAME.pem
#
# muster's copy of ../shared/recipes/puppet-ca.sh (see puppetdb.md, Part B), used by
# muster-testkit's TestPki::puppet; additions: `revoke` and an AKI in openssl mode's CRLs.
set -euo pipefail
CA_DIR=${CA_DIR:-${TMPDIR:-/tmp}/muster-puppet-ca}
CA_MODE=${CA_MODE:-server}
CA_KEYLENGTH=${CA_KEYLENGTH:-4096}
CA_PORT=${CA_PORT:-18140}
CA_SERVER_NAME=${CA_SERVER_NAME:-puppet.test}
E=$CA_DIR/etc                       # puppet confdir
CONF=$E/puppet.conf
SSL=$E/ssl
CAD=$E/ca
O=$CAD/.openssl                     # openssl mode's own helper files

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
die() { echo "puppet-ca: $*" >&2; exit 1; }

write_puppet_conf() {
  mkdir -p "$E" "$CA_DIR"/{var,log,run,code/environments/production/manifests}
  # server/ca_server = 127.0.0.1: the ca CLI never resolves or contacts another host.
  cat > "$CONF" <<EOF
[main]
confdir = $E
ssldir = $SSL
vardir = $CA_DIR/var
logdir = $CA_DIR/log
rundir = $CA_DIR/run
codedir = $CA_DIR/code
certname = $CA_SERVER_NAME
server = 127.0.0.1
ca_server = 127.0.0.1
ca_port = $CA_PORT
serverport = $CA_PORT
keylength = $CA_KEYLENGTH

[server]
cadir = $CAD
EOF
}

# ---------------------------------------------------------------- puppetserver
server_pid() { [ -f "$CA_DIR/puppetserver.pid" ] && kill -0 "$(cat "$CA_DIR/puppetserver.pid")" 2>/dev/null && cat "$CA_DIR/puppetserver.pid"; }

server_start() {
  [ -f /usr/share/puppetserver/puppetserver.jar ] || die "puppetserver not installed"
  [ -f "$CAD/ca_crt.pem" ] || die "no CA in $CAD (run init first)"
  server_pid >/dev/null && { echo "puppetserver already running"; return; }
  (exec 3<>"/dev/tcp/127.0.0.1/$CA_PORT") 2>/dev/null && die "port $CA_PORT in use"
  local S=$CA_DIR/server T; T=$(now)
  mkdir -p "$S/conf.d" "$S/services.d"
  cp /etc/puppet/puppetserver/conf.d/{auth.conf,ca.conf,metrics.conf,web-routes.conf} "$S/conf.d/"
  cp /etc/puppet/puppetserver/services.d/{bootstrap.cfg,ca.cfg} "$S/services.d/"
  cat > "$S/conf.d/global.conf" <<EOF
global: { logging-config: $S/logback.xml }
EOF
  cat > "$S/conf.d/webserver.conf" <<EOF
webserver: {
    client-auth: want
    ssl-host: 127.0.0.1
    ssl-port: $CA_PORT
}
EOF
  cat > "$S/conf.d/puppetserver.conf" <<EOF
jruby-puppet: {
    ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
    gem-home: $CA_DIR/var/jruby-gems
    gem-path: [\${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: $E
    server-code-dir: $CA_DIR/code
    server-var-dir: $CA_DIR/var
    server-run-dir: $CA_DIR/run
    server-log-dir: $CA_DIR/log
    max-active-instances: 1
}
http-client: {}
profiler: {}
dropsonde: { enabled: false }
product: { check-for-updates: false }
EOF
  cat > "$S/logback.xml" <<EOF
<configuration>
  <appender name="F1" class="ch.qos.logback.core.FileAppender">
    <file>$CA_DIR/log/puppetserver.log</file>
    <encoder><pattern>%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %-5p [%t] [%c{2}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="F1"/></root>
</configuration>
EOF
  # Same java command as /lib/systemd/system/puppetserver.service, smaller heap, our paths.
  ( cd /usr/share/puppetserver && exec nohup /usr/bin/java -Xms256m -Xmx512m \
      -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger \
      -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError \
      -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
      -XX:ErrorFile="$CA_DIR/log/puppetserver_err_pid%p.log" \
      -jar /usr/share/puppetserver/puppetserver.jar \
      --config "$S/conf.d" --bootstrap-config "$S/services.d" \
      --restart-file "$CA_DIR/run/restart" \
      >"$CA_DIR/log/stdout.log" 2>&1 </dev/null ) &
  echo $! > "$CA_DIR/puppetserver.pid"
  local pid deadline
  pid=$(cat "$CA_DIR/puppetserver.pid"); deadline=$(( $(date +%s) + 240 ))
  until curl -s --cacert "$SSL/certs/ca.pem" "https://127.0.0.1:$CA_PORT/status/v1/simple" 2>/dev/null | grep -q '^running'; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$CA_DIR/log/puppetserver.log" >&2 || true; die "puppetserver exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { server_stop; die "puppetserver not running after 240s"; }
    sleep 0.5
  done
  echo "puppetserver: running on https://127.0.0.1:$CA_PORT pid $pid ($(since "$T")s, RSS $(( $(ps -o rss= -p "$pid") / 1024 )) MiB)"
}

server_stop() {
  local pid i
  pid=$(server_pid) || { rm -f "$CA_DIR/puppetserver.pid"; return 0; }
  kill -TERM "$pid"
  for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$CA_DIR/puppetserver.pid"
  echo "puppetserver ($pid) stopped"
}

# ------------------------------------------------------------------- openssl
ossl_ext() {  # writes the extension sections Puppet's CA uses
  cat > "$O/ext.cnf" <<'EOF'
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nsComment = "Puppet Server Internal Certificate"
[node_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = critical,serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nsComment = "Puppet Server Internal Certificate"
subjectAltName = $ENV::SAN
EOF
  # minimal `openssl ca` config, only used for -gencrl and -revoke
  for w in root int; do
    mkdir -p "$O/$w"; : > "$O/$w/index.txt"; echo 01 > "$O/$w/crlnumber"
    cat > "$O/$w/ca.cnf" <<EOF
[ca]
default_ca = c
[c]
database = $O/$w/index.txt
crlnumber = $O/$w/crlnumber
default_md = sha256
default_crl_days = 5475
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
EOF
  done
}

ossl_next_serial() {  # Puppet keeps the next leaf serial, hex, in $CAD/serial
  local s; s=$(cat "$CAD/serial"); printf '%04X\n' $(( 16#$s + 1 )) > "$CAD/serial"; printf '%04X' $(( 16#$s ))
}

ossl_setup() {
  rm -rf "$CAD" "$SSL"; mkdir -p "$CAD/signed" "$O" "$SSL"/{certs,private_keys,public_keys}
  ossl_ext; echo 0001 > "$CAD/serial"; : > "$CAD/inventory.txt"
  local x="-extfile $O/ext.cnf -extensions ca_ext" d=5475
  export SAN=DNS:x   # unused by ca_ext, but the file references it
  # root (serial 1, self-signed) and intermediate "Puppet CA: NAME" (serial 2), 15 years
  openssl genrsa -traditional -out "$CAD/root_key.pem" "$CA_KEYLENGTH" 2>/dev/null
  openssl req -new -key "$CAD/root_key.pem" -subj "/CN=Puppet Root CA: $(openssl rand -hex 7)" -out "$O/root.csr"
  # shellcheck disable=SC2086
  openssl x509 -req -in "$O/root.csr" -signkey "$CAD/root_key.pem" -days $d -set_serial 1 $x -out "$O/root_crt.pem" 2>/dev/null
  openssl genrsa -traditional -out "$CAD/ca_key.pem" "$CA_KEYLENGTH" 2>/dev/null
  openssl rsa -in "$CAD/ca_key.pem" -pubout -out "$CAD/ca_pub.pem" 2>/dev/null
  openssl req -new -key "$CAD/ca_key.pem" -subj "/CN=Puppet CA: $CA_SERVER_NAME" -out "$O/ca.csr"
  # shellcheck disable=SC2086
  openssl x509 -req -in "$O/ca.csr" -CA "$O/root_crt.pem" -CAkey "$CAD/root_key.pem" -days $d -set_serial 2 $x -out "$O/int_crt.pem" 2>/dev/null
  cat "$O/int_crt.pem" "$O/root_crt.pem" > "$CAD/ca_crt.pem"
  openssl ca -gencrl -config "$O/root/ca.cnf" -keyfile "$CAD/root_key.pem" -cert "$O/root_crt.pem" -out "$O/root_crl.pem" 2>/dev/null
  rm -f "$O"/*.csr
  cp "$CAD/ca_crt.pem" "$SSL/certs/ca.pem"
  ossl_crl
  ossl_generate "$CA_SERVER_NAME" "DNS:$CA_SERVER_NAME,DNS:localhost,IP:127.0.0.1"
}

ossl_crl() {  # the intermediate's CRL from its index, then the root's: ca_crl.pem and crl.pem
  openssl ca -gencrl -config "$O/int/ca.cnf" -keyfile "$CAD/ca_key.pem" -cert "$O/int_crt.pem" -out "$O/int_crl.pem" 2>/dev/null
  cat "$O/int_crl.pem" "$O/root_crl.pem" > "$CAD/ca_crl.pem"
  cp "$CAD/ca_crl.pem" "$SSL/crl.pem"
}

ossl_revoke() {  # NAME: marks signed/NAME.pem revoked in the intermediate's index
  local c=$CAD/signed/$1.pem
  [ -s "$c" ] || die "no signed certificate for $1 in $CAD/signed"
  openssl ca -config "$O/int/ca.cnf" -keyfile "$CAD/ca_key.pem" -cert "$O/int_crt.pem" -revoke "$c" 2>/dev/null \
    || die "openssl ca -revoke $c failed"
  echo "Revoked $1"
}

ossl_generate() {  # NAME [SAN]
  local n=$1 s
  [ -e "$SSL/private_keys/$n.pem" ] && die "$SSL/private_keys/$n.pem exists"
  export SAN=${2:-DNS:$n}
  openssl genrsa -traditional -out "$SSL/private_keys/$n.pem" "$CA_KEYLENGTH" 2>/dev/null
  openssl rsa -in "$SSL/private_keys/$n.pem" -pubout -out "$SSL/public_keys/$n.pem" 2>/dev/null
  openssl req -new -key "$SSL/private_keys/$n.pem" -subj "/CN=$n" -out "$O/$n.csr"
  s=$(ossl_next_serial)
  openssl x509 -req -in "$O/$n.csr" -CA "$O/int_crt.pem" -CAkey "$CAD/ca_key.pem" -days 1825 \
     -set_serial "0x$s" -extfile "$O/ext.cnf" -extensions node_ext -out "$CAD/signed/$n.pem" 2>/dev/null
  rm -f "$O/$n.csr"
  cp "$CAD/signed/$n.pem" "$SSL/certs/$n.pem"
  echo "0x$s $(date -u +%Y-%m-%dT%H:%M:%SUTC) $(date -u -d '+1825 days' +%Y-%m-%dT%H:%M:%SUTC) /CN=$n" >> "$CAD/inventory.txt"
  echo "Successfully saved certificate for $n to $SSL/certs/$n.pem"
}

# ----------------------------------------------------------------- actions
install_puppetserver() {
  [ "$CA_MODE" = openssl ] && return 0
  command -v puppetserver >/dev/null && return 0
  [ "${CA_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] || die "puppetserver not installed (apt-get install puppetserver), or use CA_MODE=openssl"
  local T made=0; T=$(now)
  # keep the package's init script from starting the system puppetserver (0.0.0.0:8140)
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends puppetserver >/dev/null
  [ $made = 1 ] && rm -f /usr/sbin/policy-rc.d
  echo "install puppetserver: $(since "$T")s"
}

do_setup() {
  local T
  install_puppetserver
  T=$(now)
  rm -rf "$E"; write_puppet_conf
  if [ "$CA_MODE" = openssl ]; then
    ossl_setup
  else
    command -v puppetserver >/dev/null || die "puppetserver not installed (apt-get install puppetserver), or use CA_MODE=openssl"
    # IP:127.0.0.1 in the server cert lets clients verify https://127.0.0.1:$CA_PORT
    puppetserver ca setup --config "$CONF" --certname "$CA_SERVER_NAME" \
      --subject-alt-names "$CA_SERVER_NAME,localhost,IP:127.0.0.1" >/dev/null
  fi
  echo "ca setup ($CA_MODE, RSA $CA_KEYLENGTH): $(since "$T")s -> $CAD"
}

do_generate() {
  local T started=0 n; T=$(now)
  case $CA_MODE in
    openssl) for n in "$@"; do ossl_generate "$n"; done ;;
    offline) server_pid >/dev/null && die "offline signing while puppetserver runs is unsafe"
             # --force: the CLI's "is the server up?" probe gets connection-refused and would stop
             puppetserver ca generate --ca-client --force --config "$CONF" --certname "$(IFS=,; echo "$*")" 2>&1 \
               | grep -v -e '^Could not determine' -e '^Continuing with' ;;
    server)  server_pid >/dev/null || { server_start; started=1; }
             # (it prints "Error: Signed certificate NAME could not be found on the CA"
             #  before submitting the CSR: harmless, so its output goes to a log)
             puppetserver ca generate --config "$CONF" --certname "$(IFS=,; echo "$*")" \
               >"$CA_DIR/log/generate.log" 2>&1 || { cat "$CA_DIR/log/generate.log" >&2; die "generate failed"; }
             [ $started = 1 ] && server_stop ;;
    *) die "CA_MODE must be server, offline or openssl" ;;
  esac
  for n in "$@"; do
    [ -s "$SSL/certs/$n.pem" ] && [ -s "$SSL/private_keys/$n.pem" ] || die "no cert/key for $n"
    openssl verify -CAfile "$SSL/certs/ca.pem" "$SSL/certs/$n.pem" >/dev/null || die "$n does not verify"
  done
  [ "${CA_READABLE:-0}" = 1 ] && chmod -R a+rX "$E"
  echo "generate $*: $(since "$T")s"
}

do_revoke() {
  # puppetserver's `ca revoke` needs the server running; tests revoke in openssl mode only.
  [ "$CA_MODE" = openssl ] || die "revoke: only CA_MODE=openssl (Puppet's own is \`puppetserver ca revoke\` against a running server)"
  local n; for n in "$@"; do ossl_revoke "$n"; done
  ossl_crl
}

cmd=${1:-init}
case $cmd in
  init)         shift || true; [ $# -gt 0 ] || set -- node1.example; do_setup; do_generate "$@" ;;
  generate)     shift; [ $# -gt 0 ] || die "generate NAME..."; do_generate "$@" ;;
  revoke)       shift; [ $# -gt 0 ] || die "revoke NAME..."; do_revoke "$@" ;;
  server-start) server_start ;;
  server-stop)  server_stop ;;
  -*|help)      sed -n '2,26p' "$0" ;;
  *)            do_setup; do_generate "$@" ;;
esac
