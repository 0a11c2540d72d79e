# A stand-in for the official python:3.11-slim-bookworm image, made from Debian's own
# python3 (3.11) when no registry is reachable (scripts/build-base-image.sh). Debian marks
# its interpreter externally managed: hearth's images install into a virtualenv anyway.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
