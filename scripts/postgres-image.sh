#!/usr/bin/env bash
# Build a local PostgreSQL 15 container image without a container registry,
# from Debian's packages, for the testcontainers tests of annals-postgres.
#
#   scripts/postgres-image.sh            # builds annals-postgres:15 if absent
#   ANNALS_PG_IMAGE=me/pg:15 scripts/postgres-image.sh
#   scripts/postgres-image.sh --force    # rebuild even if the image exists
#
# Then run the container tests with ANNALS_TEST_PG_IMAGE=annals-postgres:15.
#
# How: `debootstrap --variant=minbase --include=postgresql-15 bookworm` into a
# temporary directory (Debian mirror taken from this machine's apt sources),
# trimmed, then `docker import`ed with an entrypoint
# (scripts/postgres-image/docker-entrypoint.sh) that behaves like the official
# `postgres` image's. Needs root, debootstrap and a running Docker engine
# (scripts/docker-up.sh provides both).
set -euo pipefail

image=${ANNALS_PG_IMAGE:-annals-postgres:15}
suite=${ANNALS_PG_IMAGE_SUITE:-bookworm}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
entrypoint="$here/postgres-image/docker-entrypoint.sh"

say() { echo "postgres-image: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

force=0
[ "${1:-}" = "--force" ] && force=1

docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-up.sh first"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    say "image $image already exists; nothing to do (--force rebuilds)"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap missing: apt-get install debootstrap"
[ -f "$entrypoint" ] || die "missing $entrypoint"

# The Debian mirror this machine's apt uses (deb822 .sources or one-line lists),
# skipping the security archive.
mirror=${ANNALS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' |
        grep -E '/debian/?$' | grep -v security | head -n 1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) { print $i; break } }' |
        grep -E '/debian/?$' | grep -v security | head -n 1 || true)
fi
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set ANNALS_DEBIAN_MIRROR"

root=$(mktemp -d /var/tmp/annals-pg-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

say "debootstrap $suite from $mirror into $root (takes about a minute)"
debootstrap --variant=minbase --include=postgresql-15 "$suite" "$root" "$mirror" \
    >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    die "debootstrap failed (log: $root.log)"
}
rm -f "$root.log"

# The package's postinst created a cluster under /var/lib/postgresql/15/main;
# the entrypoint makes its own in $PGDATA, like the official image.
rm -rf "$root"/var/lib/postgresql/15 "$root"/etc/postgresql/15
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
install -m 0755 "$entrypoint" "$root"/usr/local/bin/docker-entrypoint.sh
mkdir -p "$root"/docker-entrypoint-initdb.d "$root"/var/lib/postgresql/data
chroot "$root" chown -R postgres:postgres /var/lib/postgresql

say "docker import as $image"
tar --numeric-owner -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV PGDATA=/var/lib/postgresql/data' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'EXPOSE 5432/tcp' \
    -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    -c 'CMD ["postgres"]' \
    -m "annals: PostgreSQL 15 from Debian $suite packages" \
    - "$image" >/dev/null
say "built $image ($(docker image inspect "$image" --format '{{.Size}}' | awk '{ printf "%d MB", $1 / 1e6 }'))"
