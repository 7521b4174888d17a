# Functions the ceph driver sends ahead of its script to the bridge host (ssh_exec_and_log_stdin);
# they expect RBD to hold the rbd command with the datastore's identity.

# rbd_format <pool/image>: "1" or "2" ("" when rbd cannot open it)
rbd_format() {
    $RBD info "$1" | sed -n 's/.*format: // p'
}

# rbd_rm_r <pool/image[@snap]> [trash]: an image with its snapshots (and their clone children), or
# one snapshot; with trash = yes/true the image goes to the RBD trash instead
rbd_rm_r() {
    local rbd=$1 trash=$2 base children child snaps snap
    base=${rbd%%@*}
    if [ "$rbd" != "$base" ]; then
        children=$($RBD children "$rbd" 2>/dev/null)
        for child in $children; do
            rbd_rm_r "$child"
        done
        $RBD snap unprotect "$rbd"
        $RBD snap rm "$rbd"
    elif [[ "$trash" =~ ^(yes|YES|true|TRUE)$ ]]; then
        $RBD trash move "$rbd"
    else
        snaps=$($RBD snap ls "$rbd" 2>/dev/null | awk 'NR > 1 { print $2 }')
        for snap in $snaps; do
            rbd_rm_r "$rbd@$snap"
        done
        $RBD rm "$rbd"
    fi
}
