package main

// Raw device mappings. vcsim 0.24.2 cannot take an RDM through
// ReconfigVM_Task: its disk layout code asserts that every disk backing is
// VirtualDiskFlatVer2BackingInfo and panics on anything else. Tests that need
// a VM with an RDM (which oneswap must refuse) turn one of its flat disks into
// an RDM through POST /sim/rdm, after which the VM's config.hardware.device
// reports the disk as vSphere does. The VM's disk layout is then left alone:
// the stock methods that would lay it out again are refused for such a VM
// (rdmGuarded) instead of crashing the simulator.

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// naaID is a SCSI NAA identifier as ESXi names devices: naa.<32 hex digits>.
var naaID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// serveRdm answers POST /sim/rdm?vm=<moref>&disk=<key>&mode=physicalMode|virtualMode&naa=<32 hex>
// (no authentication, for tests): the disk keeps its key, controller, unit,
// capacity, file name (now the mapping descriptor) and uuid; its backing
// becomes VirtualDiskRawDiskMappingVer1BackingInfo of LUN naa.<naa>.
// Writing the mapping descriptor is the caller's (the fixture writes all files).
func (x *extension) serveRdm(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	mode, naa := q.Get("mode"), q.Get("naa")
	key, err := strconv.ParseInt(q.Get("disk"), 10, 32)
	switch {
	case err != nil:
		http.Error(w, "disk: want a device key", http.StatusBadRequest)
		return
	case mode != string(types.VirtualDiskCompatibilityModePhysicalMode) && mode != string(types.VirtualDiskCompatibilityModeVirtualMode):
		http.Error(w, "mode: want physicalMode or virtualMode", http.StatusBadRequest)
		return
	case !naaID.MatchString(naa):
		http.Error(w, "naa: want 32 lowercase hex digits", http.StatusBadRequest)
		return
	}
	vm := vmByRef(types.ManagedObjectReference{Type: "VirtualMachine", Value: q.Get("vm")})
	if vm == nil {
		http.Error(w, "vm: no such VM", http.StatusNotFound)
		return
	}
	var msg string
	simulator.Map.WithLock(vm, func() { msg = makeRdm(vm, int32(key), mode, naa) })
	if msg != "" {
		http.Error(w, msg, http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// makeRdm swaps the backing of one flat disk, under the VM's lock; "" or why not.
func makeRdm(vm *simulator.VirtualMachine, key int32, mode, naa string) string {
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok || disk.Key != key {
			continue
		}
		flat, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			return fmt.Sprintf("disk %d has a %T, not a flat backing", key, disk.Backing)
		}
		// A physical-mode RDM passes SCSI commands to the LUN: vSphere
		// reports it independent, since it cannot be snapshotted.
		diskMode := flat.DiskMode
		if mode == string(types.VirtualDiskCompatibilityModePhysicalMode) {
			diskMode = string(types.VirtualDiskModeIndependent_persistent)
		}
		disk.Backing = &types.VirtualDiskRawDiskMappingVer1BackingInfo{
			VirtualDeviceFileBackingInfo: flat.VirtualDeviceFileBackingInfo,
			// What ESXi reports: 02, LUN number, 00 00, the NAA id, the product id ("VMware").
			LunUuid:           "0200000000" + naa + hex.EncodeToString([]byte("VMware")),
			DeviceName:        "/vmfs/devices/disks/naa." + naa,
			CompatibilityMode: mode,
			DiskMode:          diskMode,
			Uuid:              flat.Uuid,
			ContentId:         flat.ContentId,
			Sharing:           string(types.VirtualDiskSharingSharingNone),
		}
		return ""
	}
	return fmt.Sprintf("VM %s has no disk %d", vm.Self.Value, key)
}

// rdmGuarded are the stock methods that lay a VM's disks out again (and so
// would panic on an RDM backing); the front handler refuses them on a VM
// with an RDM disk.
var rdmGuarded = map[string]bool{
	"ReconfigVM_Task": true, "Destroy_Task": true, "CloneVM_Task": true,
	"RefreshStorageInfo": true, "RemoveAllSnapshots_Task": true,
}

// rdmRefusal is the fault for a guarded method on a VM with an RDM disk, or nil.
func rdmRefusal(method string, body []byte) *methodFault {
	if !rdmGuarded[method] {
		return nil
	}
	m, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil || m.This.Type != "VirtualMachine" {
		return nil
	}
	vm := vmByRef(m.This)
	if vm == nil {
		return nil
	}
	has := false
	simulator.Map.WithLock(vm, func() {
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok {
				if _, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo); ok {
					has = true
				}
			}
		}
	})
	if !has {
		return nil
	}
	return faultf(&types.NotSupported{}, "vcsim-cbt does not simulate %s on VM %s, which has a raw device mapping", method, vm.Self.Value)
}
