package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

var datastorePath = regexp.MustCompile(`^\[([^\]]+)\] ?(.*)$`)

// datastoreDir is the local directory holding a datastore's files: the
// simulator keeps every datastore in a directory under $TMPDIR.
func datastoreDir(name string) (string, bool) {
	for _, e := range simulator.Map.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == name {
			return ds.Info.GetDatastoreInfo().Url, true
		}
	}
	return "", false
}

// localPath maps a datastore path "[LocalDS_0] vm/disk.vmdk" to the file
// backing it, and also returns the datastore's directory (vsan:// extents
// are resolved against it).
func localPath(dsPath string) (path, dsDir string, err error) {
	m := datastorePath.FindStringSubmatch(dsPath)
	if m == nil {
		return "", "", fmt.Errorf("not a datastore path: %q", dsPath)
	}
	dir, ok := datastoreDir(m[1])
	if !ok {
		return "", "", fmt.Errorf("datastore %q not found", m[1])
	}
	return filepath.Join(dir, m[2]), dir, nil
}

// extent is a piece of the virtual disk: size bytes read from file at offset,
// or zeros when file is "". kind is the descriptor's extent type (FLAT,
// VMFS, VSANSPARSE, SPARSE, ...; "RAW" for a file that is not a descriptor).
type extent struct {
	kind   string
	file   string
	offset int64
	size   int64
}

// diskData reads the bytes a guest would see. Reads past the end of the data
// (a 0-byte placeholder, a flat file shorter than the capacity) give zeros.
type diskData struct {
	extents []extent
	files   map[string]*os.File
}

// The extent line of a VMDK descriptor, e.g. `RW 32768 FLAT "disk1-flat.vmdk" 0`.
var extentLine = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?`)

// describeDisk lists the extents of the disk whose backing file is path.
// A text descriptor gives the extents it names, their files resolved
// (relative names against the descriptor's directory, vsan://<uuid> against
// the datastore's object store); any other file is one RAW extent, itself.
// It only reads the descriptor: the lock check uses it for every kind of
// extent, including those openDisk refuses to decode.
func describeDisk(path, dsDir string) (createType string, extents []extent, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	switch string(head[:n]) {
	case "KDMV", "COWD": // hosted sparse / streamOptimized, ESX 3 sparse
		return "sparse", []extent{{kind: "SPARSE", file: path, size: st.Size()}}, nil
	}
	if flat := strings.TrimSuffix(path, ".vmdk") + "-flat.vmdk"; st.Size() == 0 && flat != path+"-flat.vmdk" {
		// Stock vcsim creates a disk as two empty files, <name>.vmdk and
		// <name>-flat.vmdk: a stand-in for a descriptor and its extent.
		if fst, err := os.Stat(flat); err == nil {
			return "", []extent{{kind: "FLAT", file: flat, size: fst.Size()}}, nil
		}
	}
	if st.Size() > 64<<10 || !isDescriptor(f) {
		return "", []extent{{kind: "RAW", file: path, size: st.Size()}}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", nil, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "createType=") {
			createType = strings.ToLower(strings.Trim(strings.TrimPrefix(line, "createType="), `"`))
		}
		m := extentLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sectors, _ := strconv.ParseInt(m[2], 10, 64)
		offset, _ := strconv.ParseInt(m[5], 10, 64)
		e := extent{kind: m[3], offset: offset * 512, size: sectors * 512}
		if m[3] != "ZERO" {
			e.file = extentFile(m[4], filepath.Dir(path), dsDir)
		}
		extents = append(extents, e)
	}
	return createType, extents, sc.Err()
}

// openDisk opens the disk behind a VMDK path for reading guest bytes: FLAT,
// VMFS and VSANSPARSE extents (a vSAN object holds the guest bytes as they
// are), ZERO extents, or a raw file. Sparse formats are refused: their bytes
// are not the guest's bytes, and decoding them is beyond what the tests need
// (reference 7.2 step 1).
func openDisk(path, dsDir string) (*diskData, error) {
	createType, extents, err := describeDisk(path, dsDir)
	if err != nil {
		return nil, err
	}
	if createType != "vsansparse" && (strings.Contains(createType, "sparse") || createType == "streamoptimized") {
		return nil, fmt.Errorf("%s: createType %s is not supported (use monolithicFlat)", path, createType)
	}
	d := &diskData{extents: extents, files: map[string]*os.File{}}
	for _, e := range extents {
		switch e.kind {
		case "RAW", "FLAT", "VMFS", "VMFSRAW", "VMFSRDM", "VSANSPARSE", "ZERO":
		default: // SPARSE, VMFSSPARSE, SESPARSE, ...
			d.close()
			return nil, fmt.Errorf("%s: %s extent is not supported (use monolithicFlat)", path, e.kind)
		}
		if e.file != "" && d.files[e.file] == nil {
			f, err := os.Open(e.file)
			if err != nil {
				d.close()
				return nil, err
			}
			d.files[e.file] = f
		}
	}
	return d, nil
}

// openDiskFile opens the disk whose backing fileName is "[ds] path".
func openDiskFile(fileName string) (*diskData, error) {
	path, dsDir, err := localPath(fileName)
	if err != nil {
		return nil, err
	}
	return openDisk(path, dsDir)
}

// isDescriptor tells a small VMDK text descriptor from raw disk data.
func isDescriptor(f *os.File) bool {
	buf := make([]byte, 64<<10)
	n, _ := f.ReadAt(buf, 0)
	return bytes.Contains(buf[:n], []byte("# Disk DescriptorFile")) ||
		bytes.Contains(buf[:n], []byte("\ncreateType="))
}

// readAt fills p with the disk bytes at off.
func (d *diskData) readAt(p []byte, off int64) error {
	for i := range p {
		p[i] = 0
	}
	var base int64
	for _, e := range d.extents {
		lo, hi := max64(off, base), min64(off+int64(len(p)), base+e.size)
		if e.file != "" && lo < hi {
			_, err := d.files[e.file].ReadAt(p[lo-off:hi-off], e.offset+lo-base)
			if err != nil && err != io.EOF { // a short file reads as zeros
				return err
			}
		}
		base += e.size
	}
	return nil
}

// seekData and seekHole are lseek(2)'s SEEK_DATA and SEEK_HOLE on Linux.
const (
	seekData = 3
	seekHole = 4
)

// nextData is the first disk offset at or after off where a backing file may
// hold data (lseek SEEK_DATA), or the end of the last extent when none does.
// A file system without SEEK_DATA support reports the whole file as data.
func (d *diskData) nextData(off int64) int64 {
	var base int64
	for _, e := range d.extents {
		end := base + e.size
		if e.file != "" && off < end {
			local := max64(off, base) - base + e.offset
			if pos, err := d.files[e.file].Seek(local, seekData); err == nil && pos < e.offset+e.size {
				return base + pos - e.offset
			}
		}
		base = end
	}
	return base
}

// dataAreas lists the [start, end) ranges of the first capacity bytes of
// the disk where a backing file holds data (SEEK_DATA/SEEK_HOLE), merged and
// widened to 512-byte sectors. A file system without SEEK_DATA support
// reports a whole extent as data; zeros past a short file are not data.
func (d *diskData) dataAreas(capacity int64) [][2]int64 {
	var out [][2]int64
	add := func(lo, hi int64) {
		lo, hi = lo/512*512, min64((hi+511)/512*512, capacity)
		if lo >= hi {
			return
		}
		if n := len(out); n > 0 && out[n-1][1] >= lo {
			out[n-1][1] = max64(out[n-1][1], hi)
			return
		}
		out = append(out, [2]int64{lo, hi})
	}
	var base int64
	for _, e := range d.extents {
		if base >= capacity {
			break
		}
		if f := d.files[e.file]; e.file != "" {
			st, err := f.Stat()
			if err != nil {
				break
			}
			end := min64(e.offset+e.size, st.Size()) // file offsets of this extent
			for pos := e.offset; pos < end; {
				lo, err := f.Seek(pos, seekData)
				if err != nil { // ENXIO: no data after pos
					break
				}
				hi, err := f.Seek(lo, seekHole)
				if err != nil {
					hi = end
				}
				lo, hi = max64(lo, e.offset), min64(hi, end)
				if lo >= hi {
					break
				}
				add(base+lo-e.offset, base+hi-e.offset)
				pos = hi
			}
		}
		base += e.size
	}
	return out
}

func (d *diskData) close() {
	for _, f := range d.files {
		f.Close()
	}
}

// diskCapacity is the disk size in bytes, preferring capacityInBytes.
func diskCapacity(d *types.VirtualDisk) int64 {
	if d.CapacityInBytes > 0 {
		return d.CapacityInBytes
	}
	return d.CapacityInKB * 1024
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
