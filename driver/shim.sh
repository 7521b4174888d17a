#!/bin/sh
# An oneswap driver action as OpenNebula runs it: datastore/oneswap/<action> by the one_datastore
# MAD, market/oneswap/<action> by the one_market MAD. The work is done in JavaScript
# (lib/drivers); this file only finds node and the program. install.sh writes the paths in; from a
# source checkout (tests) the program is the checkout this file lives in.
NODE='@NODE@'
ONESWAP_HOME='@ONESWAP_HOME@'
ONESWAP_CONFIG='@ONESWAP_CONFIG@'
case $NODE in @*) NODE=node ;; esac
case $ONESWAP_HOME in @*) ONESWAP_HOME=$(cd -P "$(dirname "$0")/../../.." && pwd) ;; esac
case $ONESWAP_CONFIG in @*) ONESWAP_CONFIG=${ONESWAP_CONFIG_FILE:-} ;; esac
export ONESWAP_CONFIG
# $0 tells the program which driver and action it is, and where the stock drivers are (../fs).
exec "$NODE" "$ONESWAP_HOME/dist/lib/drivers/main.js" "$0" "$@"
