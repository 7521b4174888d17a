package main

import (
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
)

// The byte ranges of each disk that readers asked for, in the disk's own
// offsets, so a test can check that a resumed copy never reads again what
// its journal recorded as copied. A range is recorded when its read passes
// the checks (session, lock), as asked (clamped to what exists), whether or
// not the client takes every byte:
//
//	folder    a /folder GET of an extent of the disk's own descriptor: its
//	          Range (or the whole file) mapped through the extent's place
//	          in the disk; an extent of a snapshot's delta is not recorded
//	          (its bytes are not the disk's at one offset)
//	nfc       an export lease download: the whole disk, [0, capacity)
//	nfc-disk  an /nfc-disk/read: its Range
//
// Kept with the disk reads (reads.go) and reset with them.

// maxRanges bounds the ranges kept; further ones are dropped (and counted).
const maxRanges = 100000

// diskRanges is one disk's line in /sim/stats diskReads.ranges. Ranges are
// [start, end) in the order they were asked for, each with its reader.
type diskRanges struct {
	VM     string      `json:"vm"`   // VM moref value
	Disk   string      `json:"disk"` // the disk's backing fileName
	Ranges []diskRange `json:"ranges"`
}

type diskRange struct {
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Via   string `json:"via"`
}

// record adds a range read of a VM's disk.
func (t *readTracker) record(vm, disk, via string, start, end int64) {
	if end <= start {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rangeCount >= maxRanges {
		t.rangesDropped++
		return
	}
	k := readKey{vm, disk}
	d := t.ranges[k]
	if d == nil {
		d = &diskRanges{VM: vm, Disk: disk}
		t.ranges[k] = d
	}
	d.Ranges = append(d.Ranges, diskRange{Start: start, End: end, Via: via})
	t.rangeCount++
}

// rangesReply lists the disks by VM and disk; called with t.mu held.
func (t *readTracker) rangesReply() []diskRanges {
	out := []diskRanges{}
	for _, d := range t.ranges {
		out = append(out, diskRanges{VM: d.VM, Disk: d.Disk, Ranges: append([]diskRange{}, d.Ranges...)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VM != out[j].VM {
			return out[i].VM < out[j].VM
		}
		return out[i].Disk < out[j].Disk
	})
	return out
}

// openRange is a Range header's single range, `bytes=a-b` or `bytes=a-`.
var openRange = regexp.MustCompile(`^bytes=(\d+)-(\d*)$`)

// recordFolderRange records what a /folder GET of the file at local asks
// for, when the file is an extent of the disk's own descriptor.
func (t *readTracker) recordFolderRange(r *http.Request, vm, disk, local string) {
	st, err := os.Stat(local)
	if err != nil {
		return
	}
	from, to := int64(0), st.Size() // [from, to) of the file
	if h := r.Header.Get("Range"); h != "" {
		m := openRange.FindStringSubmatch(h)
		if m == nil {
			return // several ranges: no client of ours asks for them
		}
		from, _ = strconv.ParseInt(m[1], 10, 64)
		if m[2] != "" {
			last, _ := strconv.ParseInt(m[2], 10, 64)
			to = min64(to, last+1)
		}
	}
	base := int64(0) // the extent's first byte in the disk
	for _, x := range diskExtents(disk) {
		if x.is(local) {
			s, e := max64(from, x.offset), min64(to, x.offset+x.size)
			t.record(vm, disk, "folder", base+s-x.offset, base+e-x.offset)
			return
		}
		base += x.size
	}
}
