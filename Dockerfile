# syntax=docker/dockerfile:1
#
# nginx (official image) with the smart-imaging module and the example
# configuration:
#
#   docker build -t smart-imaging .
#   docker run --rm -p 8080:80 smart-imaging
#   curl -sI -H 'Accept: image/webp' http://127.0.0.1:8080/images/sk_coffee.jpg
#
# A dynamic module loads only into the exact nginx version it was built
# against, so the module is built against the source of the version the
# runtime image ships (read from that image), configured --with-compat like
# the official binaries. Choose another image with --build-arg NGINX_IMAGE=...

ARG NGINX_IMAGE=nginx:1.28.0-bookworm

FROM ${NGINX_IMAGE} AS nginx
RUN nginx -v 2>&1 | sed -e 's!^.*nginx/!!' > /nginx-version

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libclang-dev libpcre2-dev libssl-dev zlib1g-dev nasm make curl ca-certificates \
      libavif-dev libjxr-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY --from=nginx /nginx-version /nginx-version
RUN v=$(cat /nginx-version) \
 && curl -fsSL "https://nginx.org/download/nginx-$v.tar.gz" | tar -xz -C /usr/src \
 && mv "/usr/src/nginx-$v" /usr/src/nginx
WORKDIR /src
COPY . .
# Configure that source --with-compat and build the module against it,
# without the vendored nginx (tests/source_tree_build.sh checks this recipe).
RUN cp "$(scripts/build-module.sh /usr/src/nginx /src/target/docker)" /ngx_http_smart_imaging_module.so

FROM ${NGINX_IMAGE}
# The module links Debian's libavif (AVIF) and jxrlib (JPEG XR).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libavif15 libjxr0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /ngx_http_smart_imaging_module.so /usr/lib/nginx/modules/
COPY nginx-conf/docker.conf /etc/nginx/nginx.conf
COPY samples/*.jpg samples/*.png /usr/share/nginx/html/images/
EXPOSE 80
