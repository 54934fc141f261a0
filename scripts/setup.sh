# Sourced by scripts/test and scripts/nightly: install what is missing on a
# Debian machine (QEMU, the cross binutils that build the guest stubs, and the
# Python package with its dependencies).  Safe to run again: it only acts on
# what is absent.
set -euo pipefail

S2DIFF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export S2DIFF_ROOT

s2diff_need_debian() {
    local missing=()
    command -v qemu-system-aarch64 >/dev/null 2>&1 || missing+=(qemu-system-arm)
    command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
    command -v aarch64-linux-gnu-as >/dev/null 2>&1 || missing+=(binutils-aarch64-linux-gnu)
    command -v arm-none-eabi-as >/dev/null 2>&1 || missing+=(binutils-arm-none-eabi)
    # The HTML report's tests look at it in a real browser (tests/test_browser.py).
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
    fi
}

s2diff_need_python() {
    local py=${PYTHON:-python3}
    if ! "$py" -c 'import reference, harness, pexpect, elftools, capstone, rich, numpy, pytest, hypothesis, mypy, ruff' >/dev/null 2>&1 \
       || ! command -v s2diff >/dev/null 2>&1; then
        echo "setup: installing the s2diff Python package and its dependencies" >&2
        "$py" -m pip install -q --disable-pip-version-check -e "$S2DIFF_ROOT[test]"
    fi
}

s2diff_setup() {
    s2diff_need_debian
    s2diff_need_python
}
