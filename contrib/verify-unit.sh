#!/usr/bin/env bash
# contrib/verify-unit.sh: checks contrib/courriel.service.
#
#   1. the directives the design depends on are there (root with a bounded
#      capability set, the sandbox, reload, restart, file limit);
#   2. ReadWritePaths= holds the mail store and queue of config.example.toml,
#      so the two cannot drift apart;
#   3. `systemd-analyze verify` reports nothing (it exits 0 on unknown keys,
#      so any output is a failure), and `systemd-analyze security` rates the
#      exposure 3.0 or better -- both only when systemd-analyze exists
#      (skipped otherwise: this script must not require systemd).
#
# Exit status 0 when every check passed; the last line counts them.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

unit=courriel.service
example=../config.example.toml
passed=0 failed=0 skipped=0

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); printf 'verify-unit: FAIL: %s\n' "$*" >&2; }
skip() { skipped=$((skipped + 1)); printf 'verify-unit: skip: %s\n' "$*" >&2; }

# directive KEY=VALUE: an uncommented line exactly so.
directive() {
	if grep -qxF -- "$1" "$unit"; then pass; else fail "$unit lacks the line '$1'"; fi
}

for d in \
	'CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE' \
	'NoNewPrivileges=yes' \
	'ProtectSystem=strict' \
	'RuntimeDirectory=courriel' \
	'RuntimeDirectoryMode=0755' \
	'ProtectHome=yes' \
	'PrivateTmp=yes' \
	'PrivateDevices=yes' \
	'ProtectKernelTunables=yes' \
	'ProtectKernelModules=yes' \
	'ProtectKernelLogs=yes' \
	'ProtectControlGroups=yes' \
	'LockPersonality=yes' \
	'MemoryDenyWriteExecute=yes' \
	'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
	'SystemCallFilter=@system-service' \
	'ExecReload=/bin/kill -HUP $MAINPID' \
	'Restart=on-failure' \
	'LimitNOFILE=65536' \
	'ExecStart=/usr/local/bin/courriel serve -config /etc/courriel/config.toml'; do
	directive "$d"
done

# courriel chowns maildirs only when its euid is 0 (cmd/courriel/serve.go):
# a User= line would silently write every mailbox as that user.
if grep -qE '^[[:space:]]*(User|DynamicUser|PrivateUsers)=' "$unit" &&
	! grep -qE '^[[:space:]]*(DynamicUser|PrivateUsers)=(no|false|0)$' "$unit"; then
	fail "$unit sets User=, DynamicUser= or PrivateUsers=: maildirs would not be chowned"
else
	pass
fi

# toml_value SECTION KEY: the quoted string value of KEY in [SECTION].
toml_value() {
	awk -v sect="[$1]" -v key="$2" '
		/^\[/ { in_sect = ($1 == sect) }
		in_sect && $1 == key && $2 == "=" { v = $3; gsub(/"/, "", v); print v; exit }
	' "$example"
}

if [[ -f $example ]]; then
	rw=$(sed -n 's/^ReadWritePaths=//p' "$unit")
	for spec in 'delivery maildir_base' 'queue dir'; do
		# shellcheck disable=SC2086 # split "section key" on purpose
		path=$(toml_value $spec)
		if [[ -z $path ]]; then
			fail "no ${spec/ /.} in $example"
		elif [[ " $rw " == *" $path "* ]]; then
			pass
		else
			fail "ReadWritePaths='$rw' lacks ${spec/ /.} = $path from $example"
		fi
	done
else
	skip "$example not found: ReadWritePaths not compared"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# verify insists that ExecStart's binary exists: point it at a stub.
	printf '#!/bin/sh\nexit 0\n' >"$tmp/courriel"
	chmod 0755 "$tmp/courriel"
	sed "s|/usr/local/bin/courriel|$tmp/courriel|g" "$unit" >"$tmp/$unit"

	out=$(systemd-analyze verify "$tmp/$unit" 2>&1)
	rc=$?
	if [[ $rc -eq 0 && -z $out ]]; then
		pass
	else
		fail "systemd-analyze verify (exit $rc): $out"
	fi

	# security --offline needs systemd 250; older ones do not know the flag.
	if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
		# threshold is the exposure level times ten: 3.0 at most.
		if out=$(systemd-analyze security --offline=yes --threshold=30 "$tmp/$unit" 2>&1); then
			pass
		else
			fail "systemd-analyze security: $(printf '%s\n' "$out" | tail -n 1)"
		fi
	else
		skip "systemd-analyze security --offline not supported"
	fi
else
	skip "systemd-analyze not installed"
fi

printf 'verify-unit: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
((failed == 0))
