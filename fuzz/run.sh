#!/usr/bin/env bash
# Runs every smtpd-core fuzz target for ${FUZZ_SECONDS:-60} seconds each (cargo-fuzz, nightly).
# Exits non-zero if any target crashed (the input is left in fuzz/artifacts/<target>/); the
# other targets still run.
#
#   fuzz/run.sh                    # all targets
#   FUZZ_SECONDS=600 fuzz/run.sh channel
#
# Works from any directory. Installs cargo-fuzz when it is missing. The corpora live in
# fuzz/corpus/<target>/ (not committed) and are seeded with a few hand-written inputs.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
ALL_TARGETS=(command_parser data_decoder channel client proxy_header)
if [[ $# -gt 0 ]]; then
    TARGETS=("$@")
else
    TARGETS=("${ALL_TARGETS[@]}")
fi

if ! cargo "+$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# seed TARGET NAME PRINTF-FORMAT: writes one seed input (printf escapes allowed).
seed() {
    local dir="$FUZZ_DIR/corpus/$1"
    mkdir -p "$dir"
    # shellcheck disable=SC2059 # the format is the seed
    printf "$3" >"$dir/seed-$2"
}

seed command_parser ehlo 'EHLO client.example'
seed command_parser mail 'MAIL FROM: <a@b.example>  SIZE=100 BODY=8BITMIME SMTPUTF8'
seed command_parser mail-route 'mail from:<@r.example,@s.example:"q l"@[192.0.2.1]>'
seed command_parser rcpt 'RCPT TO:<Postmaster>'
seed command_parser rcpt-v6 'RCPT TO:<u@[IPv6:2001:db8::1]>'
seed command_parser bdat 'BDAT 1024 LAST'
seed command_parser vrfy 'VRFY <\xc3\xa9@b.example>'
seed command_parser unknown 'X-FOO bar baz'

# data_decoder: 7 header octets (split mode, seed x4, text line, size), then the stream.
seed data_decoder message '\x05\x11\x22\x33\x44\x20\x80Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n'
seed data_decoder smuggle '\x03\x01\x02\x03\x04\x10\x10a\n.\nMAIL FROM:<x@y>\r\n\r.\r\nb\r\n.\rX\r\n.\r\n'
seed data_decoder empty '\x00\x00\x00\x00\x01\x00\x00.\r\nNOOP\r\n'

# channel: [extensions] [config] [n] [n control octets] [client stream].
seed channel data '\x7f\x00\x00EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n'
seed channel bdat '\x7f\x01\x00EHLO c\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<postmaster>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabcMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nabcdRSET\r\nQUIT\r\n'
seed channel helo '\x00\x02\x00HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\na\nb\rc\r\n.\r\nVRFY foo\r\nEXPN x\r\nHELP MAIL\r\nHELP\r\nXFOO bar\r\nNOOP\r\n\xc3\xa9\r\nQUIT\r\n'
seed channel verdicts '\x3f\x14\x10\x07\x03\x82\x01\x06h\ri\n\x85\x00\x03\x05\x20\xff\x01EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nXFOO\r\n'

# client: [split] then the upstream's output, which is also the content to encode.
seed client replies '\x09220 mx ESMTP\r\n250-mx\r\n250-SIZE 10\r\n250 8BITMIME\r\n550 5.1.1 no\r\n'
seed client content '\x03a\n.\nb\r.\r\n..\r\n.\rX'

# proxy_header: a connection's first octets.
seed proxy_header v1 'PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\nEHLO x\r\n'
seed proxy_header v1-unknown 'PROXY UNKNOWN\r\n'
seed proxy_header v2 '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\xc0\x00\x02\x01\xdc\x04\x00\x19EHLO x\r\n'
seed proxy_header v2-local '\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00'

mkdir -p "$FUZZ_DIR/artifacts"
failed=()
for target in "${TARGETS[@]}"; do
    case "$target" in
        command_parser) dict="$FUZZ_DIR/dict/smtp.dict" max_len=1024 ;;
        data_decoder) dict="$FUZZ_DIR/dict/data.dict" max_len=4096 ;;
        channel) dict="$FUZZ_DIR/dict/smtp.dict" max_len=8192 ;;
        client) dict="$FUZZ_DIR/dict/data.dict" max_len=4096 ;;
        proxy_header) dict="$FUZZ_DIR/dict/proxy.dict" max_len=2200 ;;
        *)
            echo "run.sh: unknown target $target (known: ${ALL_TARGETS[*]})" >&2
            exit 2
            ;;
    esac
    echo "run.sh: fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
    # A crash fails the script, but only after the other targets had their turn.
    if ! (cd "$FUZZ_DIR" && cargo "+$TOOLCHAIN" fuzz run "$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -dict="$dict" \
        -print_final_stats=1); then
        echo "run.sh: $target FAILED (see $FUZZ_DIR/artifacts/$target/)" >&2
        failed+=("$target")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: no crash in ${TARGETS[*]}" >&2
