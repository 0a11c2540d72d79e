# Shared by the station and zone entrypoints (sourced): start PulseAudio from a generated
# script, stop everything on SIGTERM, and exit when any child dies so Docker restarts us.

pa_script=$XDG_RUNTIME_DIR/hearth.pa

# The control plane's remote access: TCP only from PULSE_ALLOW (addresses or CIDRs, split by
# spaces, commas or semicolons). PulseAudio's own ACL, not a shared cookie.
pa_begin_script() {
  local acl
  acl=$(echo "$PULSE_ALLOW" | tr ' ,' ';;' | tr -s ';' | sed 's/^;//; s/;$//')
  cat >"$pa_script" <<PA
load-module module-native-protocol-unix
load-module module-native-protocol-tcp port=$PULSE_PORT listen=$PULSE_LISTEN auth-ip-acl=$acl
PA
}

pa_start() {
  rm -rf "$XDG_RUNTIME_DIR/pulse"
  pulseaudio --daemonize=no --exit-idle-time=-1 --disable-shm=yes -n -F "$pa_script" \
    --log-target=stderr --log-level=notice &
  pids+=($!)
  for _ in $(seq 100); do
    pactl info >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "PulseAudio did not start" >&2
  exit 1
}

pids=()
stop_all() {
  trap - TERM INT
  kill "${pids[@]}" 2>/dev/null || true
  wait
  exit 0
}
trap stop_all TERM INT

# A zone has one job: keep PulseAudio running, as a Raspberry Pi's systemd user unit does.
# PulseAudio 16's GStreamer RTP receiver can abort (an assertion in rtp-gstreamer.c's
# pa_rtp_recv, seen in the lab stack); it is started again here, and hearth-audio's
# reconciler loads the zone's receiver into the new one. More than 5 crashes within a
# minute stop the container instead (Docker's restart policy, or a person, takes over).
supervise_pulse() {
  local crashes=() now
  while true; do
    local code=0
    wait "${pids[0]}" || code=$?
    now=$(date +%s)
    crashes=("$now" $(for t in "${crashes[@]}"; do [ $((now - t)) -lt 60 ] && echo "$t"; done))
    echo "PulseAudio exited with code $code; restart ${#crashes[@]} within a minute" >&2
    [ "${#crashes[@]}" -le 5 ] || { echo "PulseAudio keeps crashing; stopping" >&2; exit 1; }
    sleep 1
    pids=()
    pa_start
  done
}

supervise() {
  wait -n
  echo "a child process exited; stopping" >&2
  kill "${pids[@]}" 2>/dev/null || true
  exit 1
}
