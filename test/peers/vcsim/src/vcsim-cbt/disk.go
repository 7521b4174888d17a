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

// localPath maps a datastore path "[LocalDS_0] vm/disk.vmdk" to the file
// backing it: the simulator keeps every datastore in a local directory.
func localPath(dsPath string) (string, error) {
	m := datastorePath.FindStringSubmatch(dsPath)
	if m == nil {
		return "", fmt.Errorf("not a datastore path: %q", dsPath)
	}
	for _, e := range simulator.Map.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == m[1] {
			return filepath.Join(ds.Info.GetDatastoreInfo().Url, m[2]), nil
		}
	}
	return "", fmt.Errorf("datastore %q not found", m[1])
}

// extent is a piece of the virtual disk: size bytes read from file at offset,
// or zeros when file is "".
type extent struct {
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

// openDisk opens the disk behind a VMDK path. A text descriptor is followed to
// its FLAT/VMFS extents; any other file is taken as raw data. Sparse formats
// are refused: their bytes are not the guest's bytes, and decoding them is
// beyond what the tests need (reference 7.2 step 1).
func openDisk(path string) (*diskData, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	switch string(head[:n]) {
	case "KDMV", "COWD": // hosted sparse / streamOptimized, ESX 3 sparse
		f.Close()
		return nil, fmt.Errorf("%s: sparse VMDK is not supported (use a monolithicFlat or raw disk)", path)
	}
	d := &diskData{files: map[string]*os.File{}}
	if st.Size() > 64<<10 || !isDescriptor(f) {
		d.extents = []extent{{file: path, size: st.Size()}}
		d.files[path] = f
		return d, nil
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "createType=") {
			kind := strings.ToLower(strings.Trim(strings.TrimPrefix(line, "createType="), `"`))
			if strings.Contains(kind, "sparse") || kind == "streamoptimized" {
				return nil, fmt.Errorf("%s: createType %s is not supported (use monolithicFlat)", path, kind)
			}
		}
		m := extentLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sectors, _ := strconv.ParseInt(m[2], 10, 64)
		offset, _ := strconv.ParseInt(m[5], 10, 64)
		e := extent{offset: offset * 512, size: sectors * 512}
		switch m[3] {
		case "FLAT", "VMFS", "VMFSRAW", "VMFSRDM":
			e.file = filepath.Join(filepath.Dir(path), m[4])
		case "ZERO":
		default: // SPARSE, VMFSSPARSE, SESPARSE, ...
			d.close()
			return nil, fmt.Errorf("%s: %s extent is not supported (use monolithicFlat)", path, m[3])
		}
		if e.file != "" && d.files[e.file] == nil {
			ef, err := os.Open(e.file)
			if err != nil {
				d.close()
				return nil, err
			}
			d.files[e.file] = ef
		}
		d.extents = append(d.extents, e)
	}
	return d, sc.Err()
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

// seekData is lseek(2)'s SEEK_DATA on Linux.
const seekData = 3

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
