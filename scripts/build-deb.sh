#!/bin/bash
# Builds target/debian/libpam-mfa_<version>_<arch>.deb with plain dpkg-deb
# from a staging tree: no debhelper, no source package, nothing to install
# beyond dpkg-dev (for dpkg-shlibdeps, optional) and cargo.
#
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (default: target)
#   OUT_DIR           where packages go (default: target); the .deb lands in
#                     $OUT_DIR/debian
#   SKIP_BUILD=1      use the release binaries as they are
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
pkg=libpam-mfa
cargo_target=${CARGO_TARGET_DIR:-target}
out=${OUT_DIR:-target}/debian
staging=$out/staging

die() { echo "build-deb: $*" >&2; exit 1; }

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package] section"
changelog_version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' packaging/debian/changelog)
[ "$changelog_version" = "$version" ] ||
    die "packaging/debian/changelog starts at $changelog_version but Cargo.toml says $version; add a changelog entry for $version"

arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)

# Inputs written elsewhere in the repo: say exactly what is missing.
[ -f conf/pam_mfa.toml ] || die "conf/pam_mfa.toml is missing: the package ships it as /etc/security/pam_mfa.toml"
shopt -s nullglob
manpages=(docs/*.1 docs/*.5 docs/*.8)
shopt -u nullglob
for page in docs/pam_mfa.8 docs/mfa.1 docs/pam_mfa.toml.5; do
    [ -f "$page" ] || die "$page is missing: the package ships the man pages from docs/"
done

command -v python3 >/dev/null || die "python3 is needed to list the bundled crates' licenses (apt-get install python3)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --locked
fi
module=$cargo_target/release/libpam_mfa.so
command=$cargo_target/release/mfa
[ -f "$module" ] || die "$module not built (run cargo build --release)"
[ -f "$command" ] || die "$command not built (run cargo build --release)"

rm -rf "$staging"
mkdir -p "$staging/DEBIAN"
# Every mode in the package is set explicitly below; don't let ours leak in.
umask 022

secdir=lib/$multiarch/security
doc=usr/share/doc/$pkg
install -D -m 0644 "$module" "$staging/$secdir/pam_mfa.so"
install -D -m 0755 "$command" "$staging/usr/bin/mfa"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$staging/$secdir/pam_mfa.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$staging/usr/bin/mfa"

# 0600: the module and the command refuse a config others can write, and
# nothing in it is meant for ordinary users.
install -D -m 0600 conf/pam_mfa.toml "$staging/etc/security/pam_mfa.toml"
for profile in pam_mfa pam_mfa_preauth pam_mfa_authfail; do
    install -D -m 0644 "packaging/pam-configs/$profile" "$staging/usr/share/pam-configs/$profile"
done
install -D -m 0644 packaging/systemd/pam-mfa.socket "$staging/lib/systemd/system/pam-mfa.socket"
install -D -m 0644 packaging/systemd/pam-mfa.service "$staging/lib/systemd/system/pam-mfa.service"

for page in "${manpages[@]}"; do
    section=${page##*.}
    install -D -m 0644 "$page" "$staging/usr/share/man/man$section/$(basename "$page")"
    gzip -9n "$staging/usr/share/man/man$section/$(basename "$page")"
done

install -d -m 0755 "$staging/$doc"
bundled=$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 packaging/crate-licenses.py | sed 's/^/ /')
[ -n "$bundled" ] || die "could not list the bundled crates for the copyright file"
awk -v bundled="$bundled" '$0 == "@BUNDLED@" { print bundled; next } { print }' \
    packaging/debian/copyright.in >"$staging/$doc/copyright"
chmod 0644 "$staging/$doc/copyright"
# Built from its own repository, the package is Debian-native (no "-1"
# revision), so its changelog is changelog.gz, not changelog.Debian.gz.
gzip -9nc packaging/debian/changelog >"$staging/$doc/changelog.gz"
chmod 0644 "$staging/$doc/changelog.gz"
# The admin guide, and the example PAM stacks and sshd settings the man
# pages describe, for an administrator to copy from.
for file in docs/*.md; do
    [ -f "$file" ] && install -m 0644 "$file" "$staging/$doc/"
done
for file in conf/pam.d/* conf/sshd_config.d/* conf/sms/*; do
    [ -f "$file" ] && install -D -m 0644 "$file" "$staging/$doc/examples/${file#conf/}"
done
install -D -m 0644 packaging/debian/lintian-overrides "$staging/usr/share/lintian/overrides/$pkg"

# Depends: from the ELF files when dpkg-shlibdeps is there (it needs a
# debian/control to read, hence the scratch directory), else the versions
# dpkg-shlibdeps computed on Debian 12.
fallback_depends="libc6 (>= 2.34), libpam0g (>= 0.99.7.1), libsqlite3-0 (>= 3.14.0)"
if command -v dpkg-shlibdeps >/dev/null; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    mkdir "$scratch/debian"
    printf 'Source: pam-mfa\n\nPackage: %s\nArchitecture: any\n' "$pkg" >"$scratch/debian/control"
    shlib_depends=$(cd "$scratch" && dpkg-shlibdeps -O -e"$repo/$staging/$secdir/pam_mfa.so" -e"$repo/$staging/usr/bin/mfa" |
        sed -n 's/^shlibs:Depends=//p')
    [ -n "$shlib_depends" ] || die "dpkg-shlibdeps found no dependencies"
else
    echo "build-deb: dpkg-shlibdeps not found; using the Debian 12 dependency list" >&2
    shlib_depends=$fallback_depends
fi
# pam-auth-update comes from libpam-runtime: the maintainer scripts call it.
depends="$shlib_depends, libpam-runtime (>= 1.0.1-6)"

install -m 0644 packaging/debian/conffiles "$staging/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$staging/DEBIAN/$script"
done

installed_size=$(du -sk --exclude=DEBIAN "$staging" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
    packaging/debian/control.in >"$staging/DEBIAN/control"
chmod 0644 "$staging/DEBIAN/control"

(cd "$staging" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$staging/DEBIAN/md5sums"

# Same inputs, same bytes: timestamps come from the changelog, not the clock.
SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' packaging/debian/changelog | head -1)" +%s)
export SOURCE_DATE_EPOCH
find "$staging" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$staging" "$deb" >/dev/null

# What the issue promises, checked on the built file.
listing=$(dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }')
for expected in \
    "-rw-r--r-- root/root ./$secdir/pam_mfa.so" \
    '-rwxr-xr-x root/root ./usr/bin/mfa' \
    '-rw------- root/root ./etc/security/pam_mfa.toml' \
    '-rw-r--r-- root/root ./usr/share/pam-configs/pam_mfa' \
    '-rw-r--r-- root/root ./lib/systemd/system/pam-mfa.socket' \
    '-rw-r--r-- root/root ./lib/systemd/system/pam-mfa.service' \
    '-rw-r--r-- root/root ./usr/share/man/man8/pam_mfa.8.gz' \
    '-rw-r--r-- root/root ./usr/share/man/man1/mfa.1.gz' \
    '-rw-r--r-- root/root ./usr/share/man/man5/pam_mfa.toml.5.gz' \
    "-rw-r--r-- root/root ./$doc/copyright"; do
    grep -qxF -- "$expected" <<<"$listing" || die "$deb lacks: $expected"
done
if grep -E '^-[rwx-]{2}[sS]|^-[rwx-]{5}[sS]' <<<"$listing"; then
    die "$deb has a setuid or setgid file"
fi
echo "built $deb"
