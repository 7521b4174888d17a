# Test stand-in for VMware's VDDK behind nbdkit's vddk plugin (and for nbdkit's nfc plugin), as an
# nbdkit python plugin. bin/nbdkit runs it in the plugin's place with the same parameters; see
# README.md for what it stands in for and where it differs.
#
# Per NBD connection it does what VixDiskLib_ConnectEx + VixDiskLib_Open do against a vCenter:
# HTTPS to https://server[:port]/sdk, the server certificate's SHA-1 thumbprint checked against
# thumbprint=, SOAP Login (or the given cookie), then the disk opened by VM moref, file and snapshot.
# The bytes come through the simulator's /nfc-disk endpoint instead of the NFC protocol.

import errno
import glob
import hashlib
import http.client
import io
import json
import os
import re
import ssl
import sys
import threading
import urllib.parse
from xml.sax.saxutils import escape

import nbdkit

# nbdkit prints an exception from a callback with its traceback; the message alone reads like the
# plugin's own error line (bin/nbdkit rewrites the prefix into vddk's).
sys.tracebacklimit = 0

API_VERSION = 2

PLUGIN = os.environ.get("ONESWAP_STANDIN_PLUGIN", "vddk")
DEFAULT_LIBDIR = "/usr/lib64/vmware-vix-disklib"
USER_AGENT = "VMware-client/8.0.0"


class VixError(Exception):
    """An error as VDDK's VixDiskLib_GetErrorText would put it."""


# The vddk plugin's documented parameters (nbdkit-vddk-plugin(1)); the nfc plugin takes the same
# without libdir.
PARAMS = {
    "file", "config", "cookie", "libdir", "nfchostport", "single-link", "password", "port",
    "server", "snapshot", "thumbprint", "transports", "unbuffered", "user", "vm", "compression",
}
if PLUGIN != "vddk":
    PARAMS.discard("libdir")

TRANSPORTS = {"file", "san", "hotadd", "nbdssl", "nbd"}
COMPRESSION = {"none", "zlib", "fastlz", "skipz"}

cfg = {}


def read_password(value):
    """password=PASSWORD | - (from stdin) | -FD | +FILENAME, as nbdkit_read_password reads it."""
    if value == "-":
        return sys.stdin.readline().rstrip("\n")
    if re.fullmatch(r"-\d+", value):
        with os.fdopen(int(value[1:]), "r") as f:
            return f.read().rstrip("\n")
    if value.startswith("+"):
        try:
            with io.open(value[1:], "r") as f:  # `open` is the plugin callback below
                return f.read().rstrip("\n")
        except OSError as e:
            raise VixError("could not read password from file %s: %s" % (value[1:], e.strerror))
    return value


def parse_bool(key, value):
    v = value.strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    raise VixError("could not decipher boolean (%s=%s)" % (key, value))


def check_libdir(libdir):
    # VDDK >= 6.5 is a directory holding lib64/libvixDiskLib.so.N; the plugin dlopens it.
    if not glob.glob(os.path.join(libdir, "lib64", "libvixDiskLib.so.*")):
        raise VixError(
            "cannot open VDDK library: libvixDiskLib.so.8: cannot open shared object file: "
            "No such file or directory (libdir=%s has no lib64/libvixDiskLib.so.N)" % libdir)


def config(key, value):
    if key not in PARAMS:
        raise VixError("unknown parameter '%s'" % key)
    if key == "password":
        value = read_password(value)
    elif key == "libdir":
        check_libdir(value)
    elif key == "vm":
        if not value.startswith("moref="):
            raise VixError("vm parameter must be vm=moref=<ID>")
        value = value[len("moref="):]
    elif key == "transports":
        for t in value.split(":"):
            if t not in TRANSPORTS:
                raise VixError("unknown transport mode '%s'" % t)
    elif key == "compression":
        if value not in COMPRESSION:
            raise VixError("unknown compression type '%s'" % value)
    elif key in ("single-link", "unbuffered"):
        value = parse_bool(key, value)
    elif key in ("port", "nfchostport"):
        if not re.fullmatch(r"\d{1,5}", value):
            raise VixError("could not parse %s=%s" % (key, value))
        value = int(value)
    elif key == "thumbprint":
        value = re.sub(r"[:\s]", "", value).lower()
    cfg[key] = value


def config_complete():
    if PLUGIN == "vddk" and "libdir" not in cfg:
        check_libdir(DEFAULT_LIBDIR)
    if "file" not in cfg:
        raise VixError("you must supply the file=<FILENAME> parameter after the plugin name on the command line")
    if "server" not in cfg:
        # A local VMDK needs the real library; the stand-in only serves remote disks.
        raise VixError("local VMDK files are not supported here: give server=")
    for k in ("vm", "user", "thumbprint"):
        if k not in cfg:
            raise VixError("%s parameter is required when server is supplied" % ("vm=moref=" if k == "vm" else k))
    if "password" not in cfg and "cookie" not in cfg:
        raise VixError("password parameter is required when server is supplied")


def dump_plugin():
    if PLUGIN == "vddk":
        if "libdir" not in cfg:
            check_libdir(DEFAULT_LIBDIR)
        print("vddk_default_libdir=%s" % DEFAULT_LIBDIR)
        print("vddk_has_nfchostport=1")
        print("vddk_library_version=8")


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


# ---------------------------------------------------------------------------------------------
# HTTPS to the server: one keep-alive connection per nbdkit worker thread, every new one checked
# against the thumbprint.

local = threading.local()


def new_connection():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # VDDK trusts the thumbprint, not a CA
    conn = http.client.HTTPSConnection(cfg["server"], cfg.get("port", 443), context=ctx, timeout=60)
    try:
        conn.connect()
    except OSError as e:
        raise VixError("VixDiskLib_ConnectEx: Cannot connect to host %s: %s" % (cfg["server"], e.strerror or e))
    der = conn.sock.getpeercert(binary_form=True)
    if hashlib.sha1(der).hexdigest() != cfg["thumbprint"]:
        conn.close()
        raise VixError("VixDiskLib_ConnectEx: SSL Verification failed: the host's SSL thumbprint does not match "
                       "the expected thumbprint (Cannot connect to host)")
    return conn


def request(method, path, body=None, headers=None):
    """One request on this thread's connection; a connection the server dropped is reopened once."""
    for attempt in (0, 1):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = new_connection()
        try:
            h = {"User-Agent": USER_AGENT}
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            return conn.getresponse()
        except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError, ConnectionResetError):
            conn.close()
            local.conn = None
            if attempt == 1:
                raise


def soap(method, inner, cookie=None):
    envelope = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><%s xmlns="urn:vim25">%s</%s></soapenv:Body></soapenv:Envelope>' % (method, inner, method))
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "urn:vim25/6.5"}
    if cookie:
        headers["Cookie"] = cookie
    r = request("POST", "/sdk", envelope.encode(), headers)
    return r, r.read()


def login():
    if "cookie" in cfg:
        return "vmware_soap_session=%s" % cfg["cookie"]
    inner = ('<_this type="SessionManager">SessionManager</_this><userName>%s</userName><password>%s</password>'
             % (escape(cfg["user"]), escape(cfg.get("password", ""))))
    r, body = soap("Login", inner)
    m = re.search(r'vmware_soap_session="?([^;"]*)"?', r.getheader("Set-Cookie") or "")
    if r.status != 200 or not m:
        text = body.decode("utf-8", "replace")
        if "InvalidLogin" in text:
            raise VixError("VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.")
        fault = re.search(r"<faultstring>(.*?)</faultstring>", text, re.S)
        raise VixError("VixDiskLib_ConnectEx: Cannot connect to host: %s" % (fault.group(1) if fault else "HTTP %d" % r.status))
    return "vmware_soap_session=%s" % m.group(1)


def logout(cookie):
    if "cookie" not in cfg:
        soap("Logout", '<_this type="SessionManager">SessionManager</_this>', cookie)


# ---------------------------------------------------------------------------------------------
# The disk: one handle per NBD connection (VDDK opens the disk per connection too).

def disk_path(h, op):
    q = {"vm": cfg["vm"], "file": cfg["file"]}
    if "snapshot" in cfg:
        q["snapshot"] = cfg["snapshot"]
    return "/nfc-disk/%s?%s" % (op, urllib.parse.urlencode(q))


def fault_of(r, body):
    try:
        f = json.loads(body)
        return "%s: %s" % (f.get("fault", "HTTP %d" % r.status), f.get("message", ""))
    except ValueError:
        return "HTTP %d: %s" % (r.status, body[:200].decode("utf-8", "replace").strip())


def get_json(h, op):
    r = request("GET", disk_path(h, op), headers={"Cookie": h["cookie"]})
    body = r.read()
    if r.status != 200:
        raise VixError("VixDiskLib_Open: cannot open disk %s: %s" % (cfg["file"], fault_of(r, body)))
    return json.loads(body)


def open_handle(h):
    """The disk handle, held on a connection of its own as VDDK holds an NFC connection per open
    disk: the simulator counts the disk as read by this host until close() (or until the
    connection drops, when nbdkit is killed)."""
    conn = new_connection()
    conn.request("GET", disk_path(h, "open"), headers={"User-Agent": USER_AGENT, "Cookie": h["cookie"]})
    r = conn.getresponse()
    if r.status != 200:
        body = r.read()
        conn.close()
        raise VixError("VixDiskLib_Open: cannot open disk %s: %s" % (cfg["file"], fault_of(r, body)))
    opened = json.loads(r.readline())
    h["hold"] = conn
    h["handle"] = opened["handle"]
    h["capacity"] = int(opened["capacity"])


def open(readonly):
    if not readonly:
        # oneswap only reads; writing through the stand-in is not implemented.
        raise VixError("the stand-in serves disks read-only: run nbdkit with --readonly")
    h = {"cookie": login()}
    open_handle(h)
    try:
        h["extents"] = [(int(s), int(n)) for s, n in get_json(h, "extents")]
    except Exception:
        close(h)
        raise
    return h


def close(h):
    # The handle ends before close returns (the simulator answers once it has), then its connection.
    try:
        r = request("POST", "/nfc-disk/close?" + urllib.parse.urlencode({"handle": h["handle"]}),
                    headers={"Cookie": h["cookie"]})
        r.read()
    except Exception:
        pass
    h["hold"].close()
    try:
        logout(h["cookie"])
    except Exception:
        pass


def get_size(h):
    return h["capacity"]


def can_multi_conn(h):
    return True


def can_extents(h):
    return True


def pread(h, buf, offset, flags):
    n = len(buf)
    r = request("GET", disk_path(h, "read"), headers={"Cookie": h["cookie"], "Range": "bytes=%d-%d" % (offset, offset + n - 1)})
    if r.status != 206:
        body = r.read()
        nbdkit.set_error(errno.EIO)
        raise VixError("VixDiskLib_Read: %s" % fault_of(r, body))
    view = memoryview(buf)
    got = 0
    while got < n:
        k = r.readinto(view[got:])
        if not k:
            break
        got += k
    if got != n or r.read(1):
        local.conn.close()
        local.conn = None
        nbdkit.set_error(errno.EIO)
        raise VixError("VixDiskLib_Read: short read at offset %d: %d of %d bytes" % (offset, got, n))


def extents(h, count, offset, flags):
    # Data areas as VixDiskLib_QueryAllocatedBlocks gives them; everything else is a hole.
    out = []
    pos = offset
    end = offset + count
    for s, n in h["extents"]:
        if s + n <= pos:
            continue
        if s >= end:
            break
        if s > pos:
            out.append((pos, s - pos, nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO))
            pos = s
        e = min(s + n, end)
        out.append((pos, e - pos, 0))
        pos = e
    if pos < end:
        out.append((pos, end - pos, nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO))
    return out
