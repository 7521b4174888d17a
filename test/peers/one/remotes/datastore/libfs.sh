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

# ---------------------------------------------------------------------------------------------
# Bridge hosts (BRIDGE_LIST) and remote execution, in the manner of the stock libfs.sh and
# scripts_common.sh: the same calls, exit codes and the same split between what goes to oned.log
# (ERROR: lines) and what becomes the image's error text (plain lines).

SSH=${SSH:-ssh}
DD=${DD:-dd}
QEMU_IMG=${QEMU_IMG:-qemu-img}
RBD=${RBD:-rbd}
CEPH=${CEPH:-ceph}

# remove_off_hosts "h1 h2 …": the hosts `onehost list` does not show as off, err or dsbl; the list
# unchanged (and status 1) when onehost cannot tell
remove_off_hosts() {
    local all off host o skip
    all=($1)
    if ! off=$(onehost list --operator OR --no-pager --csv \
            --filter="STAT=off,STAT=err,STAT=dsbl" --list=NAME,STAT 2>/dev/null); then
        echo "$1"
        return 1
    fi
    off=($(echo "$off" | awk -F, 'NR > 1 { print $1 }'))
    for host in "${all[@]}"; do
        skip=false
        for o in "${off[@]}"; do
            [ "$host" = "$o" ] && { skip=true; break; }
        done
        $skip || echo -n "$host "
    done
}

# get_destination_host [id]: BRIDGE_LIST[id % n] among the hosts left, a random one without id
get_destination_host() {
    local reduced hosts
    reduced=$(remove_off_hosts "$BRIDGE_LIST")
    if [ -z "$reduced" ] && [ -n "$BRIDGE_LIST" ]; then
        error_message "All hosts from 'BRIDGE_LIST' are offline, error or disabled"
        exit 255
    fi
    hosts=($reduced)
    [ ${#hosts[@]} -gt 0 ] || return 0
    if [ -n "$1" ]; then
        echo "${hosts[$(($1 % ${#hosts[@]}))]}"
    else
        echo "${hosts[$((RANDOM % ${#hosts[@]}))]}"
    fi
}

# ssh_exec_and_log <host> <script> [message]: runs script with `bash -s` on host; on failure the
# script and its stderr go to oned.log and message becomes the error text; exits with ssh's status
ssh_exec_and_log() {
    local err rc
    err=$($SSH "$1" bash -s 2>&1 1>/dev/null <<EOT
export LANG=C
export LC_ALL=C
$2
EOT
)
    rc=$?
    if [ $rc -ne 0 ]; then
        log_error "Command \"$2\" failed: $err"
        error_message "${3:-Error executing $2: $err}"
        exit $rc
    fi
}

# ssh_exec_and_log_stdin <host> <script> <library file> [message]: the same, the library first
ssh_exec_and_log_stdin() {
    local err rc
    err=$($SSH "$1" bash -s 2>&1 1>/dev/null <<EOT
export LANG=C
export LC_ALL=C
$(cat "$3")

$2
EOT
)
    rc=$?
    if [ $rc -ne 0 ]; then
        log_error "Command \"$2\" failed: $err"
        error_message "${4:-Error executing $2: $err}"
        exit $rc
    fi
}

# ssh_monitor_and_log <host> <script> [name]: prints the script's stdout (stderr dropped); on
# failure logs it and exits with ssh's status
ssh_monitor_and_log() {
    local out rc
    out=$($SSH "$1" bash -s 2>/dev/null <<EOT
export LANG=C
export LC_ALL=C
$2
EOT
)
    rc=$?
    if [ $rc -ne 0 ]; then
        log_error "Command \"${3:-$2}\" failed: $out"
        exit $rc
    fi
    echo "$out"
}

# multiline_exec_and_log <script> [message]: runs script locally with `bash -s`, failures as above
multiline_exec_and_log() {
    local err rc
    err=$(bash -s 2>&1 1>/dev/null <<EOT
export LANG=C
export LC_ALL=C
$1
EOT
)
    rc=$?
    if [ $rc -ne 0 ]; then
        log_error "Command \"$1\" failed: $err"
        error_message "${2:-Error executing $1: $err}"
        exit $rc
    fi
}

# md5 of "<epoch>:<id>", the name of an image file (or of its staging copy)
generate_image_hash() {
    printf '%s\n' "$(date +%s):$ID" | md5sum | cut -d ' ' -f1
}

# verify_checksums <file> <what>: MD5/SHA1 (globals) against the file; exits with the error text
verify_checksums() {
    local sum
    if [ -n "$MD5" ]; then
        sum=$(md5sum "$1" | cut -d ' ' -f1)
        if [ "$sum" != "$MD5" ]; then
            error_message "Checksum verification failed for $2: md5 $sum != $MD5"
            return 1
        fi
    fi
    if [ -n "$SHA1" ]; then
        sum=$(sha1sum "$1" | cut -d ' ' -f1)
        if [ "$sum" != "$SHA1" ]; then
            error_message "Checksum verification failed for $2: sha1 $sum != $SHA1"
            return 1
        fi
    fi
}

# decompressor_for <file>: "gzip -dc", "bzip2 -dc", "xz -dc" or nothing, from the magic bytes
decompressor_for() {
    case "$(head -c 6 "$1" | od -An -tx1 | tr -d ' \n')" in
    1f8b*) echo "gzip -dc" ;;
    425a68*) echo "bzip2 -dc" ;;
    fd377a585a00*) echo "xz -dc" ;;
    esac
}

# source_dump_command: for a bridge copy, sets DUMP to a shell command that writes the image bytes
# of SRC to stdout (checked against MD5/SHA1, decompressed unless NO_DECOMPRESS). An http(s) PATH is
# fetched to a temporary file on the frontend first (removed on exit).
source_dump_command() {
    local file decomp
    case "$SRC" in
    http://*|https://*)
        SRC_TMP=$(mktemp "${TMPDIR:-/tmp}/one-cp-XXXXXX")
        trap 'rm -f "$SRC_TMP"' EXIT
        local args=(-f -s -S -k -L --retry 3 -o "$SRC_TMP")
        [ -n "$LIMIT_BW" ] && args+=(--limit-rate "$LIMIT_BW")
        log_info "Downloading $SRC to the image repository"
        if ! out=$(curl "${args[@]}" "$SRC" 2>&1); then
            error_message "Error downloading $SRC: $out"
            exit 1
        fi
        file=$SRC_TMP
        ;;
    *)
        if [ ! -e "$SRC" ]; then
            error_message "Cannot access $SRC: No such file or directory"
            exit 1
        fi
        log_info "Copying local image $SRC to the image repository"
        file=$SRC
        ;;
    esac
    verify_checksums "$file" "$SRC" || exit 1
    decomp=""
    [ "${NO_DECOMPRESS^^}" != "YES" ] && decomp=$(decompressor_for "$file")
    DUMP="${decomp:-cat} $(printf '%q' "$file")"
}
