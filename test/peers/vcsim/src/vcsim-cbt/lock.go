package main

import (
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// The /folder lock (flag -folder-lock, default true). ESXi holds an
// exclusive lock on every extent of the disks of a VM that is running or
// suspended, and datastore HTTP cannot open a locked file: GET answers HTTP
// 500. This is what makes reading a running VM's disks through /folder
// impossible on real systems (snapshots do not help: the base extents stay
// locked, read-only by the VM), and the simulator must not let a client get
// away with it. Descriptors, .vmx, logs and the other small files of the VM
// folder stay readable, as on ESXi.

// folderTarget resolves a /folder request to its datastore and the path in
// it. ok is false when the datastore is unknown: the stock handler answers.
func folderTarget(r *http.Request) (dsName, dsDir, rel string, ok bool) {
	dsName = r.URL.Query().Get("dsName")
	if dsName == "" { // stock falls back to the only datastore
		if all := datastores(); len(all) == 1 {
			dsName = all[0][0]
		}
	}
	dsDir, ok = datastoreDir(dsName)
	rel = strings.TrimPrefix(path.Clean("/"+strings.TrimPrefix(r.URL.Path, "/folder/")), "/")
	return dsName, dsDir, rel, ok
}

// lockHolder names the poweredOn or suspended VM that has the file at local
// as an extent of one of its disk chains (its current disks with their
// parents, and the disks of its snapshots).
func lockHolder(local string) (vmName string, locked bool) {
	vm, _, ok := extentOwner(local, func(vm *simulator.VirtualMachine) bool {
		s := vm.Runtime.PowerState
		return s == types.VirtualMachinePowerStatePoweredOn || s == types.VirtualMachinePowerStateSuspended
	})
	if !ok {
		return "", false
	}
	return vm.Name, true
}

// extentOwner finds the VM, among those accept takes (called under the VM's
// lock), that has the file at local as an extent of one of its disk chains
// (its current disks with their parents, and the disks of its snapshots),
// and the backing fileName of that disk (the top of the chain).
func extentOwner(local string, accept func(*simulator.VirtualMachine) bool) (owner *simulator.VirtualMachine, disk string, ok bool) {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		var chains [][]string
		var snaps []types.ManagedObjectReference
		simulator.Map.WithLock(vm, func() {
			if vm.Config == nil || !accept(vm) {
				return
			}
			chains = diskChains(vm.Config.Hardware.Device)
			if vm.Snapshot != nil {
				snaps = snapshotRefs(vm.Snapshot.RootSnapshotList)
			}
		})
		for _, ref := range snaps {
			if snap, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot); ok {
				simulator.Map.WithLock(snap, func() { chains = append(chains, diskChains(snap.Config.Hardware.Device)...) })
			}
		}
		for _, chain := range chains {
			for _, f := range chain {
				for _, x := range diskExtents(f) {
					if x.is(local) {
						return vm, chain[0], true
					}
				}
			}
		}
	}
	return nil, "", false
}

// diskExtents lists the extents of the disk at datastore path dsPath, none
// when it cannot be described.
func diskExtents(dsPath string) []extent {
	p, dsDir, err := localPath(dsPath)
	if err != nil {
		return nil
	}
	_, extents, err := describeDisk(p, dsDir)
	if err != nil {
		return nil
	}
	return extents
}

// is tells whether the extent's bytes are in the file at local.
func (x extent) is(local string) bool { return x.file != "" && filepath.Clean(x.file) == local }

// refuseLocked answers a GET/HEAD of a locked extent as ESXi does (HTTP 500,
// the reason in one line) and reports whether it did.
func (x *extension) refuseLocked(w http.ResponseWriter, r *http.Request) bool {
	dsName, dsDir, rel, ok := folderTarget(r)
	if !ok {
		return false
	}
	vmName, locked := lockHolder(filepath.Join(dsDir, rel))
	if !locked {
		return false
	}
	x.add(&x.stats.FolderRefusals, 1)
	msg := fmt.Sprintf("Cannot open file \"[%s] %s\": it is locked by a running virtual machine (%s)", dsName, rel, vmName)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusInternalServerError)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(msg))
	}
	return true
}

// diskChains lists, per disk among devices, its backing file followed by
// its parents' (a delta disk's chain).
func diskChains(devices []types.BaseVirtualDevice) [][]string {
	var chains [][]string
	for _, d := range devices {
		disk, ok := d.(*types.VirtualDisk)
		if !ok || disk.Backing == nil {
			continue
		}
		var files []string
		for v := reflect.ValueOf(disk.Backing); v.Kind() == reflect.Ptr && !v.IsNil(); {
			fb, ok := v.Interface().(types.BaseVirtualDeviceFileBackingInfo)
			if !ok {
				break
			}
			files = append(files, fb.GetVirtualDeviceFileBackingInfo().FileName)
			v = v.Elem().FieldByName("Parent") // every disk backing type with a chain has one
		}
		if len(files) > 0 {
			chains = append(chains, files)
		}
	}
	return chains
}

// snapshotRefs flattens a snapshot tree.
func snapshotRefs(tree []types.VirtualMachineSnapshotTree) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	for _, t := range tree {
		out = append(out, t.Snapshot)
		out = append(out, snapshotRefs(t.ChildSnapshotList)...)
	}
	return out
}
