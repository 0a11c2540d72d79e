#!/usr/bin/env bash
# The radio station: PulseAudio with a null sink per stream, MPD playing /music into
# MPD_SINK, test tones looped into the other sinks. The audio service (over TCP, from
# PULSE_ALLOW only) turns sinks into multicast RTP streams and drives MPD on MPD_PORT.
set -euo pipefail
# shellcheck source=pulse-common.sh
. /usr/local/lib/hearth/pulse-common.sh

pa_begin_script
for sink in $STATION_SINKS; do
  echo "load-module module-null-sink sink_name=$sink" >>"$pa_script"
done
pa_start

# An empty music volume gets generated test pieces, so the station plays from the start.
if [ -z "$(find /music -mindepth 1 -print -quit)" ]; then
  for piece in $STATION_TEST_PIECES; do
    sox -n -r 48000 -c 2 -b 16 "/music/${piece%%:*}.wav" synth 30 sine "${piece##*:}" vol 0.5
  done
fi

tones=$XDG_RUNTIME_DIR/tones
mkdir -p "$tones"
for tone in $STATION_TONES; do
  sink=${tone%%:*} hz=${tone##*:}
  sox -n -r 48000 -c 2 -b 16 "$tones/$sink.wav" synth 10 sine "$hz" vol 0.5
  (while paplay -d "$sink" "$tones/$sink.wav"; do :; done) &
  pids+=($!)
done

cat >"$XDG_RUNTIME_DIR/mpd.conf" <<MPD
music_directory "/music"
db_file "/var/lib/mpd-hearth/database"
state_file "/var/lib/mpd-hearth/state"
playlist_directory "/var/lib/mpd-hearth"
bind_to_address "$MPD_BIND"
port "$MPD_PORT"
log_file "/dev/stderr"
zeroconf_enabled "no"
audio_output {
  type "pulse"
  name "$MPD_SINK"
  server "unix:$XDG_RUNTIME_DIR/pulse/native"
  sink "$MPD_SINK"
}
MPD
mpd --no-daemon --stderr "$XDG_RUNTIME_DIR/mpd.conf" &
pids+=($!)
for _ in $(seq 100); do
  mpc -p "$MPD_PORT" status >/dev/null 2>&1 && break
  sleep 0.1
done
# Autoplay: the whole library on repeat, unless the playlist was kept from a previous run.
if [ "$MPD_AUTOPLAY" = 1 ]; then
  mpc -q -p "$MPD_PORT" --wait update
  if [ -z "$(mpc -p "$MPD_PORT" playlist)" ] && [ -n "$(mpc -p "$MPD_PORT" listall)" ]; then
    mpc -q -p "$MPD_PORT" add /
  fi
  mpc -q -p "$MPD_PORT" repeat on
  [ -z "$(mpc -p "$MPD_PORT" playlist)" ] || mpc -q -p "$MPD_PORT" play
fi
echo "station ready: sinks $STATION_SINKS, MPD on port $MPD_PORT into $MPD_SINK, tones $STATION_TONES"
supervise
