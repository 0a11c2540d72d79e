#!/usr/bin/env bash
# A zone box: PulseAudio with one output ("speakers") that the audio service controls over
# TCP (from PULSE_ALLOW only), loading module-rtp-recv for the stream the zone subscribes to.
set -euo pipefail
# shellcheck source=pulse-common.sh
. /usr/local/lib/hearth/pulse-common.sh

pa_begin_script
case "$ZONE_SINK" in
  null) echo "load-module module-null-sink sink_name=speakers" >>"$pa_script" ;;
  alsa) echo "load-module module-alsa-sink sink_name=speakers device=$ZONE_ALSA_DEVICE" \
          >>"$pa_script" ;;
  *) echo "ZONE_SINK must be null or alsa (got '$ZONE_SINK')" >&2; exit 2 ;;
esac
echo "set-default-sink speakers" >>"$pa_script"
pa_start
echo "zone ready: PulseAudio on tcp port $PULSE_PORT for $PULSE_ALLOW, sink speakers ($ZONE_SINK)"
supervise_pulse
