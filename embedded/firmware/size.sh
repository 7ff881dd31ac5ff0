#!/usr/bin/env bash
# Builds the firmware (release: opt-level "s", LTO, one codegen unit) and checks its size
# against the budget: flash (vector table + text + rodata + data) <= 64 KiB and static RAM
# (data + bss + uninit) <= 32 KiB. Prints the sections and the largest static buffers;
# exits non-zero when over budget.
#
# usage: embedded/firmware/size.sh      (FLASH_BUDGET / RAM_BUDGET override the budgets, in octets)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

FLASH_BUDGET=${FLASH_BUDGET:-65536}
RAM_BUDGET=${RAM_BUDGET:-32768}
TARGET=thumbv7em-none-eabihf

rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
host=$(rustc -vV | sed -n 's/^host: //p')
tools="$(rustc --print sysroot)/lib/rustlib/$host/bin"
[ -x "$tools/llvm-size" ] || rustup component add llvm-tools
[ -x "$tools/llvm-size" ] || rustup component add llvm-tools-preview

cargo build --release --target "$TARGET"
elf="${CARGO_TARGET_DIR:-target}/$TARGET/release/smtpd-firmware"

echo "== sections ($elf)"
"$tools/llvm-size" -A "$elf" | grep -vE '^(\.(debug|comment|ARM)|Total|$)'

# Section name -> size.
declare -A size
while read -r name bytes _; do
  [[ $name == .* ]] && size[$name]=$bytes
done < <("$tools/llvm-size" -A "$elf")
s() { echo "${size[$1]:-0}"; }
kib() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1024 }'; }

flash=$(( $(s .vector_table) + $(s .text) + $(s .rodata) + $(s .data) ))
ram=$(( $(s .data) + $(s .bss) + $(s .uninit) ))

echo
echo "== largest statics (data + bss)"
"$tools/llvm-nm" -S -C --size-sort --radix=d "$elf" \
  | awk '$3 ~ /^[bBdD]$/ && $2+0 >= 64 { sub(/::h[0-9a-f]+$/, "", $4); printf "%8d  %s\n", $2, $4 }' \
  | sort -rn

echo
printf 'flash      %6d octets (%s KiB) of %d: vector_table %d + text %d + rodata %d + data %d\n' \
  "$flash" "$(kib "$flash")" "$FLASH_BUDGET" \
  "$(s .vector_table)" "$(s .text)" "$(s .rodata)" "$(s .data)"
printf 'static RAM %6d octets (%s KiB) of %d: data %d + bss %d + uninit %d\n' \
  "$ram" "$(kib "$ram")" "$RAM_BUDGET" "$(s .data)" "$(s .bss)" "$(s .uninit)"

status=0
if (( flash > FLASH_BUDGET )); then
  echo "OVER BUDGET: flash $flash > $FLASH_BUDGET" >&2
  status=1
fi
if (( ram > RAM_BUDGET )); then
  echo "OVER BUDGET: static RAM $ram > $RAM_BUDGET" >&2
  status=1
fi
(( status == 0 )) && echo "within budget"
exit $status
