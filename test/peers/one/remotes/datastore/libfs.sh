# Shared helpers of the simulator's stock-like `fs` datastore driver
# (mirrors OpenNebula's libfs.sh / scripts_common.sh behaviour, own code).

# Both calling conventions (reference §5.2):
#   <=6.6 : <script> <base64> <id>      6.6.2+ -i : <script> - <id>      6.8+ : <script> <id>  (base64 on stdin)
read_action() {
    if [ $# -ge 2 ]; then
        DRV_ACTION=$1
        ID=$2
        [ "$DRV_ACTION" = "-" ] && DRV_ACTION=$(cat -)
    else
        ID=$1
        DRV_ACTION=$(cat -)
    fi
}

XPATH_MJS="$(dirname "${BASH_SOURCE[0]}")/xpath.mjs"

# xpath_values /A/B ... -> fills XPATH_ELEMENTS
xpath_values() {
    unset XPATH_ELEMENTS
    local i=0 element
    while IFS= read -r -d '' element; do
        XPATH_ELEMENTS[i++]="$element"
    done < <(node "$XPATH_MJS" -b "$DRV_ACTION" "$@")
}

# A plain stderr line: this is what oned shows in TEMPLATE/ERROR
error_message() {
    echo "$*" | tr '\n' ' ' | sed 's/ *$//' >&2
    echo >&2
}

log_info() {
    echo "INFO: $*" >&2
}

log_error() {
    echo "ERROR: $*" >&2
}

# BASE_PATH/<md5 of "<epoch>:<id>">
generate_image_path() {
    local hash
    hash=$(printf '%s\n' "$(date +%s):$ID" | md5sum | cut -d ' ' -f1)
    echo "${BASE_PATH}/${hash}"
}

# 1 if $1 is under a RESTRICTED_DIRS entry and not under a SAFE_DIRS one
check_restricted() {
    local real path safe
    real=$(readlink -f "$1" 2>/dev/null || echo "$1")
    for path in $RESTRICTED_DIRS; do
        if [ -n "$(echo "$real" | grep -E "^$path")" ]; then
            for safe in $SAFE_DIRS; do
                if [ -n "$(echo "$real" | grep -E "^$safe")" ]; then
                    echo 0
                    return
                fi
            done
            echo 1
            return
        fi
    done
    echo 0
}

# round bytes up to MiB
to_mib() {
    echo $(( ($1 + 1048575) / 1048576 ))
}

image_format() {
    local fmt
    fmt=$(qemu-img info -U "$1" 2>/dev/null | sed -n 's/^file format: //p')
    [ "$fmt" = "luks" ] && fmt=raw
    echo "${fmt:-raw}"
}

# exec_and_error "<message>" cmd args... : runs, on failure prints the message + output on one line
exec_and_error() {
    local msg=$1 out
    shift
    if ! out=$("$@" 2>&1); then
        log_error "Command \"$*\" failed: $out"
        error_message "$msg: $out"
        exit 1
    fi
}
