#!/bin/bash
# Builds target/generate-rpm/pam-mfa-<version>-1.x86_64.rpm with rpmbuild
# (Debian's `rpm` package: apt-get install rpm) from packaging/rpm/pam-mfa.spec.
#
# Why not cargo-generate-rpm: it needs its metadata in Cargo.toml (or a
# --metadata-overwrite file, which would work), but `cargo install
# cargo-generate-rpm --locked` took 9 minutes on this 2-core machine, while
# `apt-get install rpm` takes seconds; rpmbuild also computes the
# shared-library Requires (libpam.so.0, libsqlite3.so.0, glibc versions).
#
# Environment: CARGO_TARGET_DIR (default target), OUT_DIR (default target;
# the .rpm lands in $OUT_DIR/generate-rpm), SKIP_BUILD=1 to reuse the
# release build as it is.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo_target=${CARGO_TARGET_DIR:-target}
out=${OUT_DIR:-target}/generate-rpm

die() { echo "build-rpm: $*" >&2; exit 1; }

if ! command -v rpmbuild >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build-rpm: installing rpm (for rpmbuild)" >&2
        apt-get install -y -qq rpm >/dev/null || { apt-get update -qq && apt-get install -y -qq rpm >/dev/null; }
    else
        die "rpmbuild not found: apt-get install rpm (Debian) or dnf install rpm-build"
    fi
fi
version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package] section"
case $version in *-*) die "RPM versions cannot contain '-': $version" ;; esac

[ -f conf/pam_mfa.toml ] || die "conf/pam_mfa.toml is missing: the package ships it as /etc/security/pam_mfa.toml"
for page in docs/pam_mfa.8 docs/mfa.1 docs/pam_mfa.toml.5; do
    [ -f "$page" ] || die "$page is missing: the package ships the man pages from docs/"
done

command -v python3 >/dev/null || die "python3 is needed to list the bundled crates' licenses (apt-get install python3)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --locked
fi
[ -f "$cargo_target/release/libpam_mfa.so" ] || die "$cargo_target/release/libpam_mfa.so not built"
[ -f "$cargo_target/release/mfa" ] || die "$cargo_target/release/mfa not built"

work=$(realpath -m "$out/rpmbuild")
stage=$work/stage
rm -rf "$work"
mkdir -p "$stage/man"
umask 022

cp "$cargo_target/release/libpam_mfa.so" "$stage/pam_mfa.so"
cp "$cargo_target/release/mfa" "$stage/mfa"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/pam_mfa.so" "$stage/mfa"
cp conf/pam_mfa.toml packaging/systemd/pam-mfa.socket packaging/systemd/pam-mfa.service "$stage/"
for page in docs/*.1 docs/*.5 docs/*.8; do
    [ -f "$page" ] && gzip -9nc "$page" >"$stage/man/$(basename "$page").gz"
done
mkdir -p "$stage/doc/examples"
for file in docs/*.md; do
    [ -f "$file" ] && cp "$file" "$stage/doc/"
done
for file in conf/pam.d/* conf/sshd_config.d/* conf/sms/*; do
    [ -f "$file" ] && install -D -m 0644 "$file" "$stage/doc/examples/${file#conf/}"
done
bundled=$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 packaging/crate-licenses.py | sed 's/^/ /')
[ -n "$bundled" ] || die "could not list the bundled crates for the copyright file"
awk -v bundled="$bundled" '$0 == "@BUNDLED@" { print bundled; next } { print }' \
    packaging/debian/copyright.in | sed 's|"/usr/share/common-licenses/GPL-3"|"/usr/share/licenses/" (Debian: /usr/share/common-licenses/GPL-3)|' >"$stage/copyright"

SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' packaging/debian/changelog | head -1)" +%s)
export SOURCE_DATE_EPOCH
rpmbuild -bb --quiet \
    --define "_topdir $work" \
    --define "pkg_version $version" \
    --define "stage $stage" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    --target x86_64 \
    packaging/rpm/pam-mfa.spec

rpm=$out/pam-mfa-$version-1.x86_64.rpm
mv "$work/RPMS/x86_64/pam-mfa-$version-1.x86_64.rpm" "$rpm"
rm -rf "$work"

# What the issue promises, checked on the built file: mode and path, and
# for the config the %config(noreplace) flags (c, n). rpm flags man pages
# as documentation (d) by itself.
listing=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILENAMES}\n]' "$rpm")
for expected in \
    '-rw-r--r-- /usr/lib64/security/pam_mfa.so' \
    '-rwxr-xr-x /usr/bin/mfa' \
    '-rw------- /etc/security/pam_mfa.toml' \
    '-rw-r--r-- /usr/lib/systemd/system/pam-mfa.socket' \
    '-rw-r--r-- /usr/lib/systemd/system/pam-mfa.service' \
    '-rw-r--r-- /usr/share/man/man8/pam_mfa.8.gz' \
    '-rw-r--r-- /usr/share/man/man1/mfa.1.gz' \
    '-rw-r--r-- /usr/share/man/man5/pam_mfa.toml.5.gz' \
    'drwx------ /var/lib/pam_mfa'; do
    grep -qE "^[a-z]* ${expected//./\\.}\$" <<<"$listing" || die "$rpm lacks: $expected"
done
grep -qx 'cn -rw------- /etc/security/pam_mfa.toml' <<<"$listing" ||
    die "$rpm: /etc/security/pam_mfa.toml is not %config(noreplace)"
if grep -E '^[a-z]* -[rwx-]{2}[sS]|^[a-z]* -[rwx-]{5}[sS]' <<<"$listing"; then
    die "$rpm has a setuid or setgid file"
fi
# rpmbuild does not parse the scriptlets (lintian does for the .deb): a
# syntax error would only show on the target host, mid-install.
end_of_script=--end-of-scriptlet--
for tag in PREIN POSTIN PREUN POSTUN TRIGGERSCRIPTS; do
    script=
    while IFS= read -r line; do
        if [ "$line" != "$end_of_script" ]; then
            script+=$line$'\n'
            continue
        fi
        [ "$script" = $'(none)\n' ] || sh -n -c "$script" || die "$rpm: a %{$tag} scriptlet is not valid sh"
        script=
    done < <(rpm -qp --qf "[%{$tag}\n$end_of_script\n]" "$rpm")
done
echo "built $rpm"
