# Every hearth image, one build stage, built from the repository root by target:
#
#   docker build --target wake -t hearth-wake .        (also audio, ci, gateway)
#   docker build --target labhost -t hearth-labhost .  (also station, zone)
#
# `make images` (scripts/build-images.sh) builds them all, making the base images first when
# no registry can provide them.
#
# Product images (wake, audio, ci, gateway): the `hearth` distribution only (lib/, services/):
# no lab code, no pytest (tests/compose checks both). labhost, the lab stack's other machines
# (docker-compose.lab.yml), adds the `hearth-lab` distribution (lab/: the sleep simulator, the
# Zuul/Gerrit replay server). station and zone are the house's audio boxes (PulseAudio and
# MPD on Debian, no Python), in the house's compose file and the lab stack alike.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

# ======== the house's audio boxes, no Python (first: Docker's classic builder runs every
# ======== stage before the target, and these never change with the code: always cached)

# ---- pulse: what both audio boxes share: PulseAudio with RTP through GStreamer ----
# station: MPD playing into PulseAudio null sinks (one per stream) that the audio service
#          sends as multicast RTP; a second source plays a test tone (a stand-in for a TV).
# zone:    PulseAudio that plays the stream the audio service subscribes it to.
# Both are configured by environment variables (see the entrypoints and .env.example) and
# take remote control only from the addresses in PULSE_ALLOW (module-native-protocol-tcp).
FROM ${DEBIAN_IMAGE} AS pulse
RUN apt-get update \
 && apt-get install -y --no-install-recommends pulseaudio pulseaudio-utils \
      gstreamer1.0-plugins-good gstreamer1.0-plugins-base \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --home-dir /var/lib/hearth-audio --create-home \
      --shell /usr/sbin/nologin audiobox \
 && install -d -o audiobox -g audiobox /run/hearth-audio
# PulseAudio refuses to run as root without --system: everything runs as `audiobox`.
ENV HOME=/var/lib/hearth-audio XDG_RUNTIME_DIR=/run/hearth-audio \
    PULSE_SERVER=unix:/run/hearth-audio/pulse/native \
    PULSE_LISTEN=0.0.0.0 PULSE_PORT=4713 PULSE_ALLOW=127.0.0.1
COPY docker/audio/pulse-common.sh /usr/local/lib/hearth/pulse-common.sh
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["pactl", "info"]

# ---- zone: plays the subscribed stream on its speakers ----
FROM pulse AS zone
# ZONE_SINK: "null" (a null sink, for labs and tests: record it from speakers.monitor) or
# "alsa" (the box's sound card, ZONE_ALSA_DEVICE, default hw:0).
ENV ZONE_SINK=null ZONE_ALSA_DEVICE=hw:0
COPY docker/audio/zone.sh /usr/local/bin/hearth-zone
USER audiobox
EXPOSE 4713
ENTRYPOINT ["/usr/local/bin/hearth-zone"]

# ---- station: MPD into PulseAudio, a music volume, test pieces made on first start ----
FROM pulse AS station
RUN apt-get update \
 && apt-get install -y --no-install-recommends mpd mpc sox \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o audiobox -g audiobox /music /var/lib/mpd-hearth
# STATION_SINKS: the null sinks (one per stream) to create; MPD plays into MPD_SINK.
# STATION_TONES: "sink:Hz" pairs, each a test tone looped into that sink (a TV stand-in);
# STATION_TEST_PIECES: pieces generated into an empty /music, as "name:Hz" pairs.
ENV STATION_SINKS="radio tv" MPD_SINK=radio STATION_TONES="tv:880" \
    STATION_TEST_PIECES="radio-a:440 radio-b:440" MPD_BIND=any MPD_PORT=6600 MPD_AUTOPLAY=1
COPY docker/audio/station.sh /usr/local/bin/hearth-station
USER audiobox
VOLUME ["/music"]
EXPOSE 4713 6600
ENTRYPOINT ["/usr/local/bin/hearth-station"]

# ======== the Python images: one build stage ========

# ---- build: one virtualenv with hearth and its dependencies; gRPC code generated here ----
FROM ${BASE_IMAGE} AS build
# Registry-less builds bring wheels in docker/wheels/ and pass PIP_NO_INDEX=1.
ARG PIP_NO_INDEX=0
ENV PIP_NO_INDEX=${PIP_NO_INDEX} PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 PIP_PROGRESS_BAR=off PYTHONDONTWRITEBYTECODE=1
COPY docker/wheels/ /wheels/
RUN python3 -m venv /opt/protoc \
 && /opt/protoc/bin/pip install -q grpcio-tools mypy-protobuf googleapis-common-protos \
      setuptools wheel
COPY pyproject.toml /src/
RUN python3 -m venv /opt/hearth \
 && /opt/protoc/bin/python -c "import tomllib; \
print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && /opt/hearth/bin/pip install -q -r /tmp/requirements.txt
COPY README.md /src/
COPY protos /src/protos
COPY scripts/gen_protos.py /src/scripts/
COPY lib /src/lib
COPY services /src/services
WORKDIR /src
RUN /opt/protoc/bin/python scripts/gen_protos.py \
 && /opt/protoc/bin/pip wheel -q --no-deps --no-build-isolation -w /dist . \
 && /opt/hearth/bin/pip install -q --no-deps /dist/*.whl \
 && /opt/hearth/bin/python -m compileall -q /opt/hearth/lib

# ---- what every Python image shares ----
FROM ${BASE_IMAGE} AS python
ENV PATH=/opt/hearth/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# ---- the services that run as the unprivileged user "hearth" (uid 10001) ----
FROM python AS service
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/hearth \
      --shell /usr/sbin/nologin hearth \
 && install -d -o hearth -g hearth /var/lib/hearth
WORKDIR /var/lib/hearth

# ---- wake: wakes sleeping machines on demand (ARP/NDP -> Wake-on-LAN) ----
FROM python AS wake
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 tcpdump iproute2 \
 && rm -rf /var/lib/apt/lists/*
# Root, because raw sockets need CAP_NET_RAW and Docker grants a non-root user no
# capabilities: run it with cap_drop ALL + cap_add NET_RAW, NET_ADMIN (docker-compose.yml).
# Without CAP_DAC_OVERRIDE even root writes only what it owns: the state folder is root's.
RUN install -d -m 0750 /var/lib/hearth/wake
COPY --from=build /opt/hearth /opt/hearth
USER root
WORKDIR /var/lib/hearth
EXPOSE 50061 9161
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "hearth_runtime.healthcheck", "--env", "HEARTH_WAKE_GRPC_LISTEN", \
       "127.0.0.1:50061"]
ENTRYPOINT ["hearth-wake"]

# ---- audio: patches streams to zones, measures stream health and sync ----
FROM service AS audio
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpulse0 pulseaudio-utils \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o hearth -g hearth /var/lib/hearth/audio
COPY --from=build /opt/hearth /opt/hearth
USER hearth
EXPOSE 50062 9162
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "hearth_runtime.healthcheck", "--env", "HEARTH_AUDIO_GRPC_LISTEN", \
       "127.0.0.1:50062"]
ENTRYPOINT ["hearth-audio"]

# ---- ci: watches Zuul and Gerrit for your changes ----
FROM service AS ci
RUN install -d -o hearth -g hearth /var/lib/hearth/ci
COPY --from=build /opt/hearth /opt/hearth
USER hearth
EXPOSE 50063 9163
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "hearth_runtime.healthcheck", "--env", "HEARTH_CI_GRPC_LISTEN", \
       "127.0.0.1:50063"]
ENTRYPOINT ["hearth-ci"]

# ---- gateway: the front door: gRPC proxy, HTTP/JSON, the web page, authentication ----
FROM service AS gateway
RUN install -d -o hearth -g hearth /var/lib/hearth/gateway
COPY --from=build /opt/hearth /opt/hearth
# hearth-edge, the Rust gRPC front door, built on the host by `make images`
# (scripts/build-edge.sh); without it the gateway serves gRPC from Python.
COPY docker/edge/ /opt/hearth/edge/
ENV HEARTH_GATEWAY_EDGE_BINARY=/opt/hearth/edge/hearth-edge
USER hearth
EXPOSE 50051 8080 9160
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "hearth_runtime.healthcheck", "--env", "HEARTH_GATEWAY_GRPC_LISTEN", \
       "127.0.0.1:50051"]
ENTRYPOINT ["hearth-gateway"]

# ======== the lab stack's lab host ========

# ---- build-lab: the product's virtualenv plus the hearth-lab distribution ----
FROM build AS build-lab
COPY lab /src/lab
RUN /opt/protoc/bin/pip wheel -q --no-deps --no-build-isolation -w /dist-lab ./lab \
 && /opt/hearth/bin/pip install -q --no-deps /dist-lab/*.whl \
 && /opt/hearth/bin/python -m compileall -q /opt/hearth/lib

# ---- labhost: the lab's other machines, one image for three roles ----
#   devbox  a sleeping development box: hearth-sleepsim (answers nothing until a valid
#           magic packet arrives, then wakes after its resume delay)
#   client  a machine that wants the devbox (ping) and runs the hearth CLI
#   replay  the Zuul/Gerrit replay server: hearth-ci-replay (recorded documents)
# Root, with NET_RAW/NET_ADMIN added in the lab compose: the sleep simulator turns its own
# ARP and ICMP answers off and on, and ping sends ICMP.
FROM python AS labhost
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 tcpdump iproute2 iputils-ping nftables \
      procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-lab /opt/hearth /opt/hearth
CMD ["sleep", "infinity"]
