package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// extension is the state of vcsim-cbt next to the stock simulator.
type extension struct {
	block, window int64
	folderAuth    bool
	folderLock    bool                     // refuse /folder reads of a running VM's extents (lock.go)
	folderRate    int64                    // bytes/s per /folder download, 0 = unlimited
	nfcRate       int64                    // bytes/s per /nfc lease download, 0 = unlimited
	hostRate      *hostPacer               // bytes/s all disk reads of one ESXi host share (hostrate.go)
	leaseTimeout  time.Duration            // export leases expire without HttpNfcLeaseProgress
	delays        map[string]time.Duration // SOAP method -> delay before it is processed
	scheme        string                   // of the export URLs: https, or http with -tls=false
	thumbprint    string                   // SHA-1 of the server certificate, for the export URLs

	stock http.Handler
	stats counters     // atomic
	reads *readTracker // disk reads in progress per host (reads.go)

	mu           sync.Mutex
	tracks       map[diskKey]*track                                  // live CBT track per disk
	epochs       map[string]*epoch                                   // by changeId
	snapshots    map[types.ManagedObjectReference]map[int32]snapDisk // per snapshot, per disk key
	capacity     map[diskKey]int64                                   // capacityInBytes at the last sync
	leases       map[string]*lease                                   // export leases by moref value
	leaseOrder   []*lease                                            // the same, in creation order
	nfcHandles   map[string]*nfcHandle                               // open /nfc-disk handles by id
	nfcHandleSeq int

	// Session cookies that passed the /folder check recently. The check is a
	// SOAP call, which vcsim runs one at a time; real vCenter validates a
	// cookie with a lookup, concurrently. Without the cache every range
	// request of every stream would queue behind the others here.
	authMu    sync.Mutex
	authUntil map[string]time.Time
}

// authTTL stays below the idle timeout tests give vcsim (2 s), so an active
// client still touches its session while it downloads.
const authTTL = time.Second

// newExtension hooks the extension into the simulator's registry; call it
// after the model is created (Model.Load replaces the registry).
func newExtension(block, window int64) *extension {
	x := &extension{
		block:        block,
		window:       window,
		folderAuth:   true,
		folderLock:   true,
		leaseTimeout: 5 * time.Minute,
		scheme:       "https",
		tracks:       map[diskKey]*track{},
		epochs:       map[string]*epoch{},
		snapshots:    map[types.ManagedObjectReference]map[int32]snapDisk{},
		capacity:     map[diskKey]int64{},
		leases:       map[string]*lease{},
		authUntil:    map[string]time.Time{},
		reads:        newReadTracker(),
		hostRate:     newHostPacer(0),
		nfcHandles:   map[string]*nfcHandle{},
	}
	simulator.Map.AddHandler(x)
	x.sync() // capacityInBytes on the model's VMs
	return x
}

// close deletes the files of leases never ended.
func (x *extension) close() {
	x.closeLeases()
}

// front wraps the stock simulator handler: it answers the SOAP methods the
// stock one lacks, guards /folder, serves export downloads, the NFC disk
// endpoint and the stats, and passes everything else through unchanged.
func (x *extension) front(stock http.Handler) http.Handler {
	x.stock = stock
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case r.Method == http.MethodPost && (p == "/sdk" || p == "/sdk/vimService"):
			x.serveSDK(w, r)
		case p == "/sim/stats":
			x.serveStats(w, r)
		case p == "/sim/disk-reads/reset":
			x.serveResetReads(w, r)
		case p == "/sim/rdm":
			x.serveRdm(w, r)
		case strings.HasPrefix(p, "/nfc-disk/"):
			x.serveNfcDisk(w, r)
		case strings.HasPrefix(p, "/folder/"):
			x.serveFolder(w, r)
		case strings.HasPrefix(p, "/nfc/") && x.serveExport(w, r):
		default:
			stock.ServeHTTP(w, r)
		}
	})
}

// serveFolder guards datastore HTTP: session cookie, vSAN objects, the lock
// of running VMs' extents; then counts (and paces) what stock serves.
func (x *extension) serveFolder(w http.ResponseWriter, r *http.Request) {
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch _, _, rel, _ := folderTarget(r); {
	case x.folderAuth && !x.authenticated(r):
		// Real vCenter would also take Basic credentials; refusing them
		// makes sure the client sends the session cookie (reference 7.6).
		w.Header().Set("WWW-Authenticate", `Basic realm="VMware HTTP server"`)
		http.Error(w, "a session cookie is required", http.StatusUnauthorized)
		return
	case isVsanObjectPath(rel):
		http.NotFound(w, r) // vSAN objects are not files
		return
	case read && x.folderLock && x.refuseLocked(w, r):
		return
	}
	if r.Method == http.MethodGet {
		end, vm := x.beginFolderRead(r)
		if end != nil {
			defer end()
			w = &readEndingWriter{ResponseWriter: w, end: end, remaining: -1}
		}
		w = &countingWriter{ResponseWriter: w, x: x, counter: &x.stats.FolderBytes}
		if vm != nil {
			w = &hostPacedWriter{ResponseWriter: w, pacer: x.hostRate, host: vmHost(vm).Value}
		}
		if x.folderRate > 0 {
			w = &pacedWriter{ResponseWriter: w, rate: float64(x.folderRate)}
		}
	}
	x.stock.ServeHTTP(w, r)
}

// beginFolderRead opens a reader of the disk whose extent a /folder GET
// asks for (reads.go) and returns it with the disk's VM, or nils when the
// file is no VM's disk extent.
func (x *extension) beginFolderRead(r *http.Request) (end func(), vm *simulator.VirtualMachine) {
	_, dsDir, rel, ok := folderTarget(r)
	if !ok {
		return nil, nil
	}
	local := filepath.Join(dsDir, rel)
	vm, disk, ok := extentOwner(local, func(*simulator.VirtualMachine) bool { return true })
	if !ok {
		return nil, nil
	}
	x.reads.recordFolderRange(r, vm.Self.Value, disk, local)
	return x.reads.begin(vm, disk, "folder"), vm
}

// pacedWriter sends a response body no faster than rate bytes per second.
// Real datastore HTTP gives one download far less than the link: hostd
// streams each request on its own (tens of MB/s per stream measured through
// vCenter, reference peers 4.2 and 9), so parallel range streams pay off
// there and not on loopback, where the client's own CPU is the limit.
type pacedWriter struct {
	http.ResponseWriter
	rate  float64
	start time.Time
	sent  int64
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	written := 0
	for len(b) > 0 {
		chunk := b
		if len(chunk) > 64<<10 {
			chunk = chunk[:64<<10]
		}
		n, err := p.ResponseWriter.Write(chunk)
		written += n
		p.sent += int64(n)
		if err != nil {
			return written, err
		}
		b = b[n:]
		due := p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
	}
	return written, nil
}

// currentTime is the cheapest call that needs a session: the stock handler
// answers it with 200 for a live session and NotAuthenticated otherwise.
const currentTime = `<?xml version="1.0" encoding="UTF-8"?>` +
	`<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>` +
	`<CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>` +
	`</Body></Envelope>`

// authenticated asks the stock handler whether the request's session cookie
// is live. The session table is private to the library; asking it keeps
// logout, idle expiry and activity tracking exactly as stock.
func (x *extension) authenticated(r *http.Request) bool {
	c, err := r.Cookie(soap.SessionCookieName)
	if err != nil || c.Value == "" {
		return false
	}
	x.authMu.Lock()
	until, ok := x.authUntil[c.Value]
	x.authMu.Unlock()
	if ok && time.Now().Before(until) {
		return true
	}
	probe := httptest.NewRequest(http.MethodPost, "/sdk", strings.NewReader(currentTime))
	probe.RemoteAddr = r.RemoteAddr // the session records address and agent
	probe.Header.Set("User-Agent", r.UserAgent())
	probe.AddCookie(c)
	rec := httptest.NewRecorder()
	x.stock.ServeHTTP(rec, probe)
	if rec.Code != http.StatusOK {
		return false
	}
	x.authMu.Lock()
	x.authUntil[c.Value] = time.Now().Add(authTTL)
	x.authMu.Unlock()
	return true
}

func (x *extension) serveSDK(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	method := soapMethod(body)

	// -delay: a slow vCenter. The call is processed only after the delay,
	// so e.g. a delayed HttpNfcLeaseProgress does not keep a lease alive.
	if d := x.delays[method]; d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}

	if f := rdmRefusal(method, body); f != nil && x.authenticated(r) {
		writeFault(w, f.msg, f.fault)
		return
	}

	switch method {
	case "QueryChangedDiskAreas", "ExportVm", "ExportSnapshot":
		x.serveOwn(w, r, body)
		return
	case "HttpNfcLeaseProgress", "HttpNfcLeaseComplete", "HttpNfcLeaseAbort":
		if m, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil && x.leaseOf(m.This) != nil {
			x.serveOwn(w, r, body)
			return
		}
	}

	// Everything else goes to the stock handler. Its answer is held back
	// until the extension's bookkeeping for it is done, so a client never
	// sees a finished task whose result is not yet vSphere-like.
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	x.stock.ServeHTTP(rec, r)
	if rec.Code == http.StatusOK && strings.HasSuffix(method, "_Task") {
		if task, ok := taskOf(rec.Body.Bytes()); ok {
			x.syncTask(task)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// serveOwn answers the SOAP methods the stock simulator does not implement.
func (x *extension) serveOwn(w http.ResponseWriter, r *http.Request, body []byte) {
	if simulator.Trace {
		fmt.Fprintf(simulator.TraceFile, "Request: %s\n", body)
	}
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		writeFault(w, err.Error(), &types.InvalidRequest{})
		return
	}
	if !x.authenticated(r) {
		writeFault(w, "", &types.NotAuthenticated{NoPermission: types.NoPermission{Object: m.This, PrivilegeId: "System.View"}})
		return
	}
	var res interface{}
	var fault *methodFault
	switch req := m.Body.(type) {
	case *types.QueryChangedDiskAreas:
		var info *types.DiskChangeInfo
		if info, fault = x.queryChangedDiskAreas(req); fault == nil {
			res = &queryChangedDiskAreasResponse{Returnval: *info}
		}
	case *types.ExportVm:
		var lease *types.ManagedObjectReference
		if lease, fault = x.exportVM(req); fault == nil {
			res = &exportVMResponse{Returnval: *lease}
		}
	case *types.ExportSnapshot:
		var lease *types.ManagedObjectReference
		if lease, fault = x.exportSnapshot(req); fault == nil {
			res = &exportSnapshotResponse{Returnval: *lease}
		}
	case *types.HttpNfcLeaseProgress:
		if fault = x.leaseOf(req.This).progress(req.Percent); fault == nil {
			res = emptyResponse("HttpNfcLeaseProgress")
		}
	case *types.HttpNfcLeaseComplete:
		if fault = x.leaseOf(req.This).complete(); fault == nil {
			res = emptyResponse("HttpNfcLeaseComplete")
		}
	case *types.HttpNfcLeaseAbort:
		if fault = x.leaseOf(req.This).abort(req.Fault); fault == nil {
			res = emptyResponse("HttpNfcLeaseAbort")
		}
	}
	if fault != nil {
		writeFault(w, fault.msg, fault.fault)
		return
	}
	writeSOAP(w, http.StatusOK, struct{ Res interface{} }{res})
}
