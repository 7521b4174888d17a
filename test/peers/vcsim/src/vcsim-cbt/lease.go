package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Export leases (HttpNfcLease of ExportVm and ExportSnapshot), with the
// life cycle of ESXi's:
//
//	initializing  the streamOptimized VMDKs are being made (in the
//	              background: the SOAP call returns at once, as on ESXi)
//	ready         info.deviceUrl[] can be downloaded (session cookie, no Range)
//	done          HttpNfcLeaseComplete
//	error         HttpNfcLeaseAbort, the lease timed out (Timedout), or the
//	              export failed
//
// The lease times out when no HttpNfcLeaseProgress came for -lease-timeout:
// a client that does not keep it alive during a long download loses it on
// ESXi, and must here too. Leaving ready/initializing deletes the files and
// cuts the downloads in flight (the connection is closed mid-body).
//
// Progress, Complete and Abort of these leases are answered here, not by the
// stock handler: it knows nothing of states or timeouts.

type lease struct {
	x        *extension
	obj      *simulator.HttpNfcLease // in the registry, read by PropertyCollector
	vm       types.ManagedObjectReference
	snapshot types.ManagedObjectReference // zero for ExportVm
	disks    []exportDisk
	dir      string
	bytes    int64 // body bytes served, atomic

	// ctx ends when the lease leaves initializing/ready: it stops the
	// conversion and cuts the downloads.
	ctx  context.Context
	stop context.CancelFunc

	mu    sync.Mutex
	state types.HttpNfcLeaseState
	end   string            // complete, abort, expired; "" while live or after a failed export
	files map[string]string // URL name -> file, once ready
	timer *time.Timer
	gen   int // of the timer: a stale expiry (reset meanwhile) does nothing
}

func (x *extension) startLease(vm, snapshot types.ManagedObjectReference, disks []exportDisk) (*types.ManagedObjectReference, *methodFault) {
	dir, err := os.MkdirTemp("", "vcsim-cbt-export-")
	if err != nil {
		return nil, faultf(&types.FileFault{File: dir}, "%v", err)
	}
	obj := &simulator.HttpNfcLease{HttpNfcLease: mo.HttpNfcLease{State: types.HttpNfcLeaseStateInitializing}}
	// The lease lives in the global registry (the stock import leases live in
	// the session's): the front handler has no access to the session object.
	simulator.Map.Put(obj)
	l := &lease{x: x, obj: obj, vm: vm, snapshot: snapshot, disks: disks, dir: dir, state: types.HttpNfcLeaseStateInitializing}
	l.ctx, l.stop = context.WithCancel(context.Background())
	l.mu.Lock()
	l.arm()
	l.mu.Unlock()
	x.mu.Lock()
	x.leases[obj.Self.Value] = l
	x.leaseOrder = append(x.leaseOrder, l)
	x.mu.Unlock()
	go l.initialize()
	return &obj.Self, nil
}

// arm (re)starts the timeout. Caller holds l.mu.
func (l *lease) arm() {
	if l.timer != nil {
		l.timer.Stop()
	}
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(l.x.leaseTimeout, func() { l.expire(gen) })
}

// update changes the registry object under its lock, for PropertyCollector.
func (l *lease) update(f func(o *mo.HttpNfcLease)) {
	simulator.Map.WithLock(l.obj, func() { f(&l.obj.HttpNfcLease) })
}

func (l *lease) live() bool {
	return l.state == types.HttpNfcLeaseStateInitializing || l.state == types.HttpNfcLeaseStateReady
}

// initialize makes the VMDKs, then makes the lease ready.
func (l *lease) initialize() {
	x := l.x
	files := map[string]string{}
	info := &types.HttpNfcLeaseInfo{
		Lease:        l.obj.Self,
		Entity:       l.vm,
		LeaseTimeout: int32((x.leaseTimeout + time.Second - 1) / time.Second),
	}
	for i, d := range l.disks {
		name := fmt.Sprintf("disk-%d.vmdk", i)
		size, err := writeExport(l.ctx, d, filepath.Join(l.dir, name), x.block)
		if err != nil {
			l.mu.Lock()
			if l.live() { // else it ended meanwhile; the error is only that
				l.finish(types.HttpNfcLeaseStateError, "", &types.LocalizedMethodFault{
					Fault:            &types.FileFault{File: d.fileName},
					LocalizedMessage: fmt.Sprintf("export of %s failed: %v", d.fileName, err),
				})
			}
			l.mu.Unlock()
			return
		}
		files[name] = filepath.Join(l.dir, name)
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:           d.key,
			ImportKey:     d.key,
			Url:           fmt.Sprintf("%s://*/nfc/%s/%s", x.scheme, l.obj.Self.Value, name),
			SslThumbprint: x.thumbprint,
			Disk:          types.NewBool(true),
			TargetId:      name,
			FileSize:      size,
		})
		info.TotalDiskCapacityInKB += (d.capacity + 1023) / 1024
		progress := int32((i + 1) * 100 / len(l.disks))
		l.update(func(o *mo.HttpNfcLease) { o.InitializeProgress = progress })
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != types.HttpNfcLeaseStateInitializing {
		_ = os.RemoveAll(l.dir) // ended meanwhile: files written since are deleted too
		return
	}
	l.state, l.files = types.HttpNfcLeaseStateReady, files
	l.update(func(o *mo.HttpNfcLease) {
		o.Info, o.InitializeProgress, o.State = info, 100, types.HttpNfcLeaseStateReady
	})
}

// finish ends a live lease. Caller holds l.mu.
func (l *lease) finish(state types.HttpNfcLeaseState, end string, fault *types.LocalizedMethodFault) {
	l.state, l.end, l.files = state, end, nil
	// The new state is visible before downloads are cut and files go: a
	// client that sees its download fail reads why.
	l.update(func(o *mo.HttpNfcLease) { o.State, o.Error = state, fault })
	l.timer.Stop()
	l.stop()
	_ = os.RemoveAll(l.dir)
}

func (l *lease) expire(gen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen || !l.live() {
		return
	}
	l.finish(types.HttpNfcLeaseStateError, "expired", &types.LocalizedMethodFault{
		Fault:            &types.Timedout{},
		LocalizedMessage: fmt.Sprintf("The lease timed out: no progress for %s.", l.x.leaseTimeout),
	})
}

// notLive is the fault of a call on a lease that has ended: Timedout when it
// expired, InvalidState otherwise (as vSphere documents them). Caller holds l.mu.
func (l *lease) notLive() *methodFault {
	if l.end == "expired" {
		return faultf(&types.Timedout{}, "the lease %s has timed out", l.obj.Self.Value)
	}
	return faultf(&types.InvalidState{}, "the lease %s is %s", l.obj.Self.Value, l.state)
}

// progress is HttpNfcLeaseProgress: it keeps the lease alive.
func (l *lease) progress(percent int32) *methodFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live() {
		return l.notLive()
	}
	l.arm()
	l.update(func(o *mo.HttpNfcLease) { o.TransferProgress = percent })
	return nil
}

func (l *lease) complete() *methodFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.live():
		return l.notLive()
	case l.state != types.HttpNfcLeaseStateReady:
		return faultf(&types.InvalidState{}, "the lease %s is still initializing", l.obj.Self.Value)
	}
	l.finish(types.HttpNfcLeaseStateDone, "complete", nil)
	return nil
}

func (l *lease) abort(fault *types.LocalizedMethodFault) *methodFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live() {
		return l.notLive()
	}
	if fault == nil {
		fault = &types.LocalizedMethodFault{Fault: &types.RequestCanceled{}, LocalizedMessage: "The operation was canceled by the user."}
	}
	l.finish(types.HttpNfcLeaseStateError, "abort", fault)
	return nil
}

// leaseOf finds an export lease by moref value (nil for import leases).
func (x *extension) leaseOf(ref types.ManagedObjectReference) *lease {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.leases[ref.Value]
}

func (x *extension) leaseStats() []leaseStats {
	x.mu.Lock()
	all := append([]*lease(nil), x.leaseOrder...)
	x.mu.Unlock()
	out := []leaseStats{}
	for _, l := range all {
		l.mu.Lock()
		out = append(out, leaseStats{
			ID: l.obj.Self.Value, VM: l.vm.Value, Snapshot: l.snapshot.Value,
			State: string(l.state), End: l.end, Bytes: atomic.LoadInt64(&l.bytes),
		})
		l.mu.Unlock()
	}
	return out
}

// closeLeases deletes the files of leases never ended, at shutdown.
func (x *extension) closeLeases() {
	x.mu.Lock()
	all := append([]*lease(nil), x.leaseOrder...)
	x.mu.Unlock()
	for _, l := range all {
		l.stop()
		_ = os.RemoveAll(l.dir)
	}
}

// --- downloads -------------------------------------------------------------

// serveExport answers GET/HEAD /nfc/<lease>/<file> of export leases, and
// reports false for anything else (import leases, which stock serves). Like
// ESXi's NFC: the session cookie is required and Range is ignored (the whole
// file, 200).
func (x *extension) serveExport(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/nfc/"), "/")
	if len(parts) != 2 {
		return false
	}
	l := x.leaseOf(types.ManagedObjectReference{Type: "HttpNfcLease", Value: parts[0]})
	if l == nil {
		return false
	}
	if !x.authenticated(r) {
		http.Error(w, "a session cookie is required", http.StatusUnauthorized)
		return true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return true
	}
	l.mu.Lock()
	file := l.files[parts[1]]
	l.mu.Unlock()
	f, err := os.Open(file)
	if file == "" || err != nil {
		http.NotFound(w, r)
		return true
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
		return true
	}
	end := func() {}
	host := ""
	if i, ok := leaseDiskIndex(parts[1]); ok && i < len(l.disks) {
		if vm := vmByRef(l.vm); vm != nil {
			x.reads.record(vm.Self.Value, l.disks[i].fileName, "nfc", 0, l.disks[i].capacity)
			end = x.reads.begin(vm, l.disks[i].fileName, "nfc")
			host = vmHost(vm).Value
		}
	}
	defer end()
	// The download owns its connection (hijacked) so that the end of the
	// lease can close it at once, even while a write is blocked on a slow
	// client or a paced one is waiting: the client sees the body cut.
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "export downloads need HTTP/1.1", http.StatusInternalServerError)
		return true
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return true
	}
	defer conn.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-l.ctx.Done():
			closeConn(conn)
		case <-done:
		}
	}()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nDate: %s\r\nConnection: close\r\n\r\n",
		st.Size(), time.Now().UTC().Format(http.TimeFormat))
	if buf.Flush() != nil {
		return true
	}

	chunk := int64(64 << 10)
	if x.nfcRate > 0 && x.nfcRate/50 < chunk { // pace in steps of ~20 ms
		chunk = max64(x.nfcRate/50, 512)
	}
	b := make([]byte, chunk)
	start := time.Now()
	var sent int64
	for l.ctx.Err() == nil {
		n, rerr := f.Read(b)
		if n > 0 {
			if sent+int64(n) >= st.Size() {
				end() // the last bytes: the client must not have them while the read counts
			}
			var m int
			var werr error
			if host != "" {
				m, werr = x.hostRate.write(conn, host, b[:n])
			} else {
				m, werr = conn.Write(b[:n])
			}
			sent += int64(m)
			x.add(&x.stats.NfcBytes, int64(m))
			atomic.AddInt64(&l.bytes, int64(m))
			if werr != nil {
				return true
			}
		}
		if rerr != nil {
			return true
		}
		if x.nfcRate > 0 {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(float64(sent) / float64(x.nfcRate) * float64(time.Second))))):
			case <-l.ctx.Done():
			}
		}
	}
	return true
}

// leaseDiskIndex is N of a lease URL name disk-N.vmdk.
func leaseDiskIndex(name string) (int, bool) {
	if !strings.HasPrefix(name, "disk-") || !strings.HasSuffix(name, ".vmdk") {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "disk-"), ".vmdk"))
	return i, err == nil && i >= 0
}

// closeConn closes the TCP connection under conn (under TLS too, without
// the close_notify alert: the client sees the body cut, not a clean end).
func closeConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
}
