package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sync/atomic"
)

// counters are what tests read from GET /sim/stats to see how a client
// read the disks (through /folder, an export lease, or the NFC disk
// endpoint) and how often the /folder lock refused it. Updated with
// sync/atomic; one field per counter, so adding one is a one-line change.
type counters struct {
	FolderRefusals int64 `json:"folderRefusals"` // /folder GET/HEADs refused by the lock
	FolderBytes    int64 `json:"folderBytes"`    // body bytes /folder served
	NfcBytes       int64 `json:"nfcBytes"`       // body bytes of /nfc lease downloads
	NfcDiskBytes   int64 `json:"nfcDiskBytes"`   // body bytes of /nfc-disk/read
}

// leaseStats describes one export lease in /sim/stats.
type leaseStats struct {
	ID       string `json:"id"`       // lease moref value
	VM       string `json:"vm"`       // VM moref value
	Snapshot string `json:"snapshot"` // snapshot moref value, "" for ExportVm
	State    string `json:"state"`    // initializing, ready, done, error
	End      string `json:"end"`      // complete, abort, expired; "" while live
	Bytes    int64  `json:"bytes"`    // body bytes served from its URLs
}

type statsReply struct {
	counters
	Leases    []leaseStats   `json:"leases"`
	DiskReads diskReadsReply `json:"diskReads"`
	// HostBytes is the disk bytes served per ESXi host (moref value) since
	// start, /folder, /nfc and /nfc-disk alike, each chunk counted when its
	// host's budget let it go (-host-rate, hostrate.go).
	HostBytes map[string]int64 `json:"hostBytes"`
}

func (x *extension) add(counter *int64, n int64) { atomic.AddInt64(counter, n) }

// serveStats answers GET /sim/stats: no authentication, it is for tests.
func (x *extension) serveStats(w http.ResponseWriter, r *http.Request) {
	var reply statsReply
	// Every field is an int64 counter: load them all atomically by
	// reflection, so a new counter needs no code here.
	src, dst := reflect.ValueOf(&x.stats).Elem(), reflect.ValueOf(&reply.counters).Elem()
	for i := 0; i < src.NumField(); i++ {
		dst.Field(i).SetInt(atomic.LoadInt64(src.Field(i).Addr().Interface().(*int64)))
	}
	reply.Leases = x.leaseStats()
	reply.DiskReads = x.reads.reply()
	reply.HostBytes = x.hostRate.reply()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(reply)
}

// countingWriter adds the body bytes it passes on to a counter.
type countingWriter struct {
	http.ResponseWriter
	x       *extension
	counter *int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.x.add(c.counter, int64(n))
	return n, err
}
