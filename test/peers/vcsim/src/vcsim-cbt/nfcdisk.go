package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// The NFC disk endpoint: what a test stand-in of VMware's VDDK reads
// through. VDDK opens a disk over NFC by VM, disk file and (for a running
// VM) snapshot; ESXi allows it for a snapshot's disk, or for any disk of a
// powered-off VM, and refuses a running VM's base disk (locked). That is the
// sanctioned way to read a running VM, so the /folder lock does not apply.
//
//	GET /nfc-disk/info?vm=&file=[&snapshot=]     {"capacity":<bytes>}
//	GET /nfc-disk/extents?...                     [[start,length],...] data areas
//	GET /nfc-disk/read?... with Range: bytes=a-b  206, the disk's bytes
//	GET /nfc-disk/open?...                        a handle: {"handle","capacity"} and a
//	                                              line end, then the answer stays open
//	POST /nfc-disk/close?handle=                  ends the handle (204)
//
// A handle is the stand-in's VixDiskLib_Open: VDDK holds an NFC connection
// to the host per open disk, and the disk counts as read (reads.go) from open
// to close, or until the client's connection drops (a killed reader). All
// need the session cookie. Faults are JSON {"fault","message"}.

// nfcFault answers a JSON fault.
func nfcFault(w http.ResponseWriter, status int, fault, format string, args ...interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"fault": fault, "message": fmt.Sprintf(format, args...)})
}

// nfcDisk resolves the query to its VM, an open disk and its capacity, or
// answers the fault and returns a nil disk.
func (x *extension) nfcDisk(w http.ResponseWriter, r *http.Request) (*simulator.VirtualMachine, *diskData, int64) {
	q := r.URL.Query()
	vmRef := types.ManagedObjectReference{Type: "VirtualMachine", Value: q.Get("vm")}
	vm, ok := simulator.Map.Get(vmRef).(*simulator.VirtualMachine)
	if !ok {
		nfcFault(w, http.StatusNotFound, "ManagedObjectNotFound", "managed object not found: %s", vmRef.Value)
		return nil, nil, 0
	}
	file := q.Get("file")
	var devices []types.BaseVirtualDevice
	var state types.VirtualMachinePowerState
	simulator.Map.WithLock(vm, func() {
		state, devices = vm.Runtime.PowerState, vm.Config.Hardware.Device
	})
	snapshot := q.Get("snapshot")
	if snapshot != "" {
		ref := types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: snapshot}
		snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
		if !ok || snap.Vm != vm.Self {
			nfcFault(w, http.StatusNotFound, "ManagedObjectNotFound", "managed object not found: %s (a snapshot of %s)", snapshot, vmRef.Value)
			return nil, nil, 0
		}
		simulator.Map.WithLock(snap, func() { devices = snap.Config.Hardware.Device })
	}
	var capacity int64 = -1
	for _, d := range devices {
		if disk, ok := d.(*types.VirtualDisk); ok && diskFile(disk) == file {
			capacity = diskCapacity(disk)
		}
	}
	switch {
	case capacity < 0:
		nfcFault(w, http.StatusNotFound, "FileNotFound", "%q is not the backing file of a disk of %s", file, map[bool]string{true: snapshot, false: vmRef.Value}[snapshot != ""])
		return nil, nil, 0
	case snapshot == "" && state != types.VirtualMachinePowerStatePoweredOff:
		nfcFault(w, http.StatusInternalServerError, "FileLocked", "Cannot open %s: it is locked by the %s virtual machine %s (open a snapshot's disk instead)", file, state, vm.Name)
		return nil, nil, 0
	}
	d, err := openDiskFile(file)
	if err != nil {
		nfcFault(w, http.StatusInternalServerError, "FileFault", "cannot open %s: %v", file, err)
		return nil, nil, 0
	}
	return vm, d, capacity
}

var rangeHeader = regexp.MustCompile(`^bytes=(\d+)-(\d+)$`)

func (x *extension) serveNfcDisk(w http.ResponseWriter, r *http.Request) {
	if !x.authenticated(r) {
		http.Error(w, "a session cookie is required", http.StatusUnauthorized)
		return
	}
	op := r.URL.Path[len("/nfc-disk/"):]
	method := http.MethodGet
	if op == "close" {
		method = http.MethodPost
	}
	switch {
	case op != "info" && op != "extents" && op != "read" && op != "open" && op != "close":
		http.NotFound(w, r)
		return
	case r.Method != method:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case op == "close":
		x.closeHandle(w, r.URL.Query().Get("handle"))
		return
	}
	var from, to int64 // of a read, inclusive
	if op == "read" {
		m := rangeHeader.FindStringSubmatch(r.Header.Get("Range"))
		if m == nil {
			http.Error(w, "a single Range: bytes=a-b is required", http.StatusBadRequest)
			return
		}
		from, _ = strconv.ParseInt(m[1], 10, 64)
		to, _ = strconv.ParseInt(m[2], 10, 64)
		if to < from {
			http.Error(w, "bad Range", http.StatusBadRequest)
			return
		}
	}
	vm, d, capacity := x.nfcDisk(w, r)
	if d == nil {
		return
	}
	defer d.close()
	file := r.URL.Query().Get("file")

	switch op {
	case "info":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"capacity": capacity})
	case "extents":
		areas := [][2]int64{}
		for _, a := range d.dataAreas(capacity) {
			areas = append(areas, [2]int64{a[0], a[1] - a[0]})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(areas)
	case "open":
		x.holdHandle(w, r, x.reads.begin(vm, file, "nfc-disk"), capacity)
	case "read":
		if from >= capacity {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", capacity))
			http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		to = min64(to, capacity-1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(to-from+1, 10))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, capacity))
		x.reads.record(vm.Self.Value, file, "nfc-disk", from, to+1)
		end := x.reads.begin(vm, file, "nfc-disk")
		defer end()
		host := vmHost(vm).Value
		w.WriteHeader(http.StatusPartialContent)
		buf := make([]byte, 1<<20)
		for off := from; off <= to; {
			p := buf[:min64(int64(len(buf)), to+1-off)]
			if err := d.readAt(p, off); err != nil {
				panic(http.ErrAbortHandler) // headers are sent: cut the body
			}
			if off+int64(len(p)) > to {
				end() // the last bytes: the client must not have them while the read counts
			}
			n, err := x.hostRate.write(w, host, p)
			x.add(&x.stats.NfcDiskBytes, int64(n))
			if err != nil {
				return
			}
			off += int64(n)
		}
	}
}

// nfcHandle is an open /nfc-disk handle: closing it ends its reader.
type nfcHandle struct {
	end    func()
	closed chan struct{}
	once   sync.Once
}

func (h *nfcHandle) close() {
	h.once.Do(func() {
		h.end()
		close(h.closed)
	})
}

// holdHandle answers GET /nfc-disk/open: the handle and the capacity on one
// line, then the answer stays open until the handle is closed or the client
// goes (its connection closed: a reader that was killed).
func (x *extension) holdHandle(w http.ResponseWriter, r *http.Request, end func(), capacity int64) {
	h := &nfcHandle{end: end, closed: make(chan struct{})}
	x.mu.Lock()
	x.nfcHandleSeq++
	id := fmt.Sprintf("nfc-%d", x.nfcHandleSeq)
	x.nfcHandles[id] = h
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.nfcHandles, id)
		x.mu.Unlock()
		h.close()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]interface{}{"handle": id, "capacity": capacity})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-r.Context().Done():
	case <-h.closed:
	}
}

// closeHandle answers POST /nfc-disk/close: the reader has ended when the
// answer arrives, so a client may open its next disk at once.
func (x *extension) closeHandle(w http.ResponseWriter, id string) {
	x.mu.Lock()
	h := x.nfcHandles[id]
	x.mu.Unlock()
	if h == nil {
		nfcFault(w, http.StatusNotFound, "NotFound", "no open disk handle %q", id)
		return
	}
	h.close()
	w.WriteHeader(http.StatusNoContent)
}
