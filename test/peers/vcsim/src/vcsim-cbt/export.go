package main

import (
	"bytes"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// ExportVm and HttpNfcLease downloads (reference 7.4). The stock simulator
// has leases only for ImportVApp uploads, and its /nfc GET has no Range
// support, so export leases and their downloads are served here. Progress,
// Complete and Abort stay with the stock handler; after Complete/Abort the
// front handler calls releaseExport, which deletes the exported files.

// export is one ExportVm lease: its directory and its files by URL name.
type export struct {
	dir   string
	files map[string]string
}

type exportDisk struct {
	key      string
	fileName string
	capacity int64
}

func (x *extension) exportVM(req *types.ExportVm) (*types.ManagedObjectReference, *methodFault) {
	vm, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		return nil, faultf(&types.ManagedObjectNotFound{Obj: req.This}, "managed object not found: %s", req.This)
	}
	var state types.VirtualMachinePowerState
	var disks []exportDisk
	simulator.Map.WithLock(vm, func() {
		state = vm.Runtime.PowerState
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok {
				unit := int32(-1)
				if disk.UnitNumber != nil {
					unit = *disk.UnitNumber
				}
				disks = append(disks, exportDisk{
					key:      fmt.Sprintf("/%s/%d:%d", vm.Self.Value, disk.ControllerKey, unit),
					fileName: diskFile(disk),
					capacity: diskCapacity(disk),
				})
			}
		}
	})
	if state != types.VirtualMachinePowerStatePoweredOff {
		return nil, faultf(&types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff,
			ExistingState:  state,
		}, "The attempted operation cannot be performed in the current state (%s).", state)
	}

	dir, err := os.MkdirTemp("", "vcsim-cbt-export-")
	if err != nil {
		return nil, faultf(&types.FileFault{File: dir}, "%v", err)
	}
	lease := &simulator.HttpNfcLease{HttpNfcLease: mo.HttpNfcLease{State: types.HttpNfcLeaseStateInitializing}}
	// The lease lives in the global registry (the stock import leases live in
	// the session's): the front handler has no access to the session object,
	// and the stock Progress/Complete/Abort find it there just the same.
	simulator.Map.Put(lease)
	ex := &export{dir: dir, files: map[string]string{}}
	info := &types.HttpNfcLeaseInfo{Lease: lease.Self, Entity: vm.Self, LeaseTimeout: 300}
	for i, d := range disks {
		name := fmt.Sprintf("disk-%d.vmdk", i)
		size, err := writeExport(d, filepath.Join(dir, name), x.block)
		if err != nil {
			_ = os.RemoveAll(dir)
			simulator.Map.Remove(lease.Self)
			return nil, faultf(&types.FileFault{File: d.fileName}, "export of %s failed: %v", d.fileName, err)
		}
		ex.files[name] = filepath.Join(dir, name)
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:           d.key,
			ImportKey:     d.key,
			Url:           fmt.Sprintf("%s://*/nfc/%s/%s", x.scheme, lease.Self.Value, name),
			SslThumbprint: x.thumbprint,
			Disk:          types.NewBool(true),
			TargetId:      name,
			FileSize:      size,
		})
		info.TotalDiskCapacityInKB += (d.capacity + 1023) / 1024
	}
	simulator.Map.WithLock(lease, func() {
		lease.Info = info
		lease.State = types.HttpNfcLeaseStateReady
	})
	x.mu.Lock()
	x.exports[lease.Self.Value] = ex
	x.mu.Unlock()
	return &lease.Self, nil
}

// writeExport writes the disk as a streamOptimized VMDK (what vSphere's
// export sends), converted by qemu-img from a sparse raw image of the guest
// bytes. Without qemu-img the raw image itself is served.
func writeExport(d exportDisk, out string, block int64) (int64, error) {
	path, err := localPath(d.fileName)
	if err != nil {
		return 0, err
	}
	src, err := openDisk(path)
	if err != nil {
		return 0, err
	}
	defer src.close()
	raw := out + ".raw"
	f, err := os.Create(raw)
	if err != nil {
		return 0, err
	}
	defer os.Remove(raw)
	err = f.Truncate(d.capacity)
	buf, zero := make([]byte, block), make([]byte, block)
	for off := int64(0); err == nil && off < d.capacity; off += block {
		p := buf[:min64(block, d.capacity-off)]
		if err = src.readAt(p, off); err == nil && !bytes.Equal(p, zero[:len(p)]) {
			_, err = f.WriteAt(p, off)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}

	if _, lerr := exec.LookPath("qemu-img"); lerr != nil {
		log.Printf("vcsim-cbt: qemu-img not found, exporting raw bytes")
		err = os.Rename(raw, out)
	} else {
		cmd := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, out)
		if msg, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("qemu-img: %v: %s", cerr, strings.TrimSpace(string(msg)))
		}
	}
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// serveExport answers GET/HEAD /nfc/<lease>/<file> for export leases, with
// Range support from http.ServeContent. It reports false for anything else
// (import leases), which the stock handler serves.
func (x *extension) serveExport(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/nfc/"), "/")
	if len(parts) != 2 {
		return false
	}
	x.mu.Lock()
	ex := x.exports[parts[0]]
	var file string
	if ex != nil {
		file = ex.files[parts[1]]
	}
	x.mu.Unlock()
	if ex == nil {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return true
	}
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
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
	return true
}

// releaseExport runs after a successful stock HttpNfcLeaseComplete/Abort.
func (x *extension) releaseExport(lease types.ManagedObjectReference) {
	x.mu.Lock()
	ex := x.exports[lease.Value]
	delete(x.exports, lease.Value)
	x.mu.Unlock()
	if ex != nil {
		_ = os.RemoveAll(ex.dir)
		simulator.Map.Remove(lease)
	}
}
