package main

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Disk reads in progress per ESXi host, so a test can check a client's
// per-host budget ("at most N disks reading from one host"). ESXi bounds
// what one host serves at once (NFC connections and memory, hostd's HTTP
// streams: reference peers 4.3, 4.4); a client that migrates an estate must
// spread its disks over the hosts, and the simulator makes that checkable.
//
// A disk is being read while at least one of its readers is open. A reader:
//
//	folder    a /folder GET of an extent of the disk that passed the checks
//	          (session, lock): from the start of its handling until its body's
//	          last byte is about to be sent, or the handler returns
//	nfc       a GET of the disk's URL of an export lease: the same span
//	nfc-disk  a handle of GET /nfc-disk/open (what the VDDK stand-in holds
//	          per NBD connection, as VDDK holds an NFC connection per
//	          VixDiskLib_Open): until POST /nfc-disk/close or the client's
//	          connection closes; and each /nfc-disk/read, as for folder
//
// Several readers of one disk (range streams, NBD connections) are one disk
// read. A reader ends before the last byte leaves, so a client that has its
// whole answer (or has closed its handle) and starts the next disk can never
// be seen reading both: no false excess. A client that reads one disk with
// pauses between requests shows several reads of it: the count may be low,
// never high.
//
// The read belongs to the host the VM is registered on (runtime.host) when
// it starts. A disk is its VM and its backing fileName.

// maxIntervals bounds the ended reads kept for /sim/stats; older ones are
// dropped (and counted).
const maxIntervals = 10000

type readKey struct{ vm, disk string }

type diskRead struct {
	host, vm, disk, via string
	start               time.Time
	readers             int
}

// hostReads is one host's line in /sim/stats.
type hostReads struct {
	Name    string `json:"name"`    // the host's name, e.g. DC0_H0
	Current int    `json:"current"` // disks being read now
	Max     int    `json:"max"`     // the most at once since start or reset
	Total   int    `json:"total"`   // disk reads started since start or reset
}

// readInterval is one disk read in /sim/stats. Times are milliseconds since
// the Unix epoch (microsecond precision); End is nil while it goes on.
type readInterval struct {
	Host  string   `json:"host"` // host moref value
	VM    string   `json:"vm"`   // VM moref value
	Disk  string   `json:"disk"` // the disk's backing fileName
	Via   string   `json:"via"`  // the first reader: folder, nfc, nfc-disk
	Start float64  `json:"start"`
	End   *float64 `json:"end"`
}

type diskReadsReply struct {
	Hosts     map[string]*hostReads `json:"hosts"`     // by host moref value
	Intervals []readInterval        `json:"intervals"` // ended reads, in the order they ended
	Open      []readInterval        `json:"open"`      // reads going on, in the order they started
	Dropped   int                   `json:"dropped"`   // ended reads no longer in intervals
	// Ranges is each disk's byte ranges asked for (ranges.go), by VM and disk.
	Ranges        []diskRanges `json:"ranges"`
	RangesDropped int          `json:"rangesDropped"` // ranges not kept (maxRanges)
}

type readTracker struct {
	mu        sync.Mutex
	open      map[readKey]*diskRead
	hosts     map[string]*hostReads
	intervals []readInterval
	dropped   int
	// ranges.go
	ranges        map[readKey]*diskRanges
	rangeCount    int
	rangesDropped int
}

func newReadTracker() *readTracker {
	return &readTracker{open: map[readKey]*diskRead{}, hosts: map[string]*hostReads{}, ranges: map[readKey]*diskRanges{}}
}

func millis(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

// begin opens a reader of a VM's disk and returns the function that ends
// it (idempotent, so a handler can end it early and again on return).
func (t *readTracker) begin(vm *simulator.VirtualMachine, disk, via string) (end func()) {
	host := vmHost(vm)
	hostName := host.Value
	if h, ok := simulator.Map.Get(host).(*simulator.HostSystem); ok {
		hostName = h.Name
	}
	k := readKey{vm.Self.Value, disk}
	t.mu.Lock()
	d := t.open[k]
	if d == nil {
		d = &diskRead{host: host.Value, vm: k.vm, disk: disk, via: via, start: time.Now()}
		t.open[k] = d
		h := t.hosts[host.Value]
		if h == nil {
			h = &hostReads{Name: hostName}
			t.hosts[host.Value] = h
		}
		h.Current++
		h.Total++
		if h.Current > h.Max {
			h.Max = h.Current
		}
	}
	d.readers++
	t.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { t.end(k, d) }) }
}

func (t *readTracker) end(k readKey, d *diskRead) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d.readers--; d.readers > 0 {
		return
	}
	delete(t.open, k)
	t.hosts[d.host].Current--
	end := millis(time.Now())
	iv := d.interval()
	iv.End = &end
	if len(t.intervals) == maxIntervals {
		t.intervals = t.intervals[1:]
		t.dropped++
	}
	t.intervals = append(t.intervals, iv)
}

func (d *diskRead) interval() readInterval {
	return readInterval{Host: d.host, VM: d.vm, Disk: d.disk, Via: d.via, Start: millis(d.start)}
}

// reset starts the record anew: reads going on stay (current, and max =
// current); hosts with none are forgotten; totals, intervals and ranges
// restart.
func (t *readTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, h := range t.hosts {
		if h.Current == 0 {
			delete(t.hosts, id)
			continue
		}
		h.Max, h.Total = h.Current, 0
	}
	t.intervals, t.dropped = nil, 0
	t.ranges, t.rangeCount, t.rangesDropped = map[readKey]*diskRanges{}, 0, 0
}

func (t *readTracker) reply() diskReadsReply {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := diskReadsReply{Hosts: map[string]*hostReads{}, Intervals: append([]readInterval{}, t.intervals...), Open: []readInterval{}, Dropped: t.dropped, Ranges: t.rangesReply(), RangesDropped: t.rangesDropped}
	for id, h := range t.hosts {
		c := *h
		r.Hosts[id] = &c
	}
	for _, d := range t.open {
		r.Open = append(r.Open, d.interval())
	}
	sort.Slice(r.Open, func(i, j int) bool { return r.Open[i].Start < r.Open[j].Start })
	return r
}

// serveResetReads answers POST /sim/disk-reads/reset (no authentication, for tests).
func (x *extension) serveResetReads(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	x.reads.reset()
	w.WriteHeader(http.StatusNoContent)
}

// readEndingWriter ends a reader just before the last byte of the body is
// written (the Content-Length the handler set), so the client cannot hold
// its whole answer while the read still counts.
type readEndingWriter struct {
	http.ResponseWriter
	end       func()
	remaining int64 // -1 until known; -2 when there is no length to go by
}

func (e *readEndingWriter) Write(b []byte) (int, error) {
	if e.remaining == -1 {
		e.remaining = -2
		if n, err := strconv.ParseInt(e.Header().Get("Content-Length"), 10, 64); err == nil {
			e.remaining = n
		}
	}
	if e.remaining >= 0 {
		if int64(len(b)) >= e.remaining {
			e.end()
		}
		e.remaining -= int64(len(b))
	}
	return e.ResponseWriter.Write(b)
}

// vmByRef is the VM of a moref, or nil.
func vmByRef(ref types.ManagedObjectReference) *simulator.VirtualMachine {
	vm, _ := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	return vm
}
