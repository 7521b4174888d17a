# The cephx identity of a Ceph datastore as rbd/ceph options, in the order the stock drivers add
# them: CEPH_USER (--id), CEPH_KEY (--keyfile), CEPH_CONF (--conf). Without them the bridge host's
# /etc/ceph/ceph.conf and client.admin apply.
ceph_identity_args() {
    local args=""
    [ -n "$CEPH_USER" ] && args="$args --id ${CEPH_USER}"
    [ -n "$CEPH_KEY" ] && args="$args --keyfile ${CEPH_KEY}"
    [ -n "$CEPH_CONF" ] && args="$args --conf ${CEPH_CONF}"
    echo "$args"
}
