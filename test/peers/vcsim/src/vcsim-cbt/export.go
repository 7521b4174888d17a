package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// ExportVm and ExportSnapshot (reference 7.4): both answer with an export
// lease (lease.go) of the disks of a config, the VM's or the snapshot's. The
// stock simulator has leases only for ImportVApp uploads.

type exportDisk struct {
	key      string
	fileName string
	capacity int64
}

// exportDisks lists the disks of a config (VM or snapshot) for a lease.
func exportDisks(vm types.ManagedObjectReference, devices []types.BaseVirtualDevice) []exportDisk {
	var disks []exportDisk
	for _, d := range devices {
		if disk, ok := d.(*types.VirtualDisk); ok {
			unit := int32(-1)
			if disk.UnitNumber != nil {
				unit = *disk.UnitNumber
			}
			disks = append(disks, exportDisk{
				key:      fmt.Sprintf("/%s/%d:%d", vm.Value, disk.ControllerKey, unit),
				fileName: diskFile(disk),
				capacity: diskCapacity(disk),
			})
		}
	}
	return disks
}

// exportVM: ESXi exports only a powered-off VM (a running one's disks are
// locked); ExportSnapshot is the way for a running VM.
func (x *extension) exportVM(req *types.ExportVm) (*types.ManagedObjectReference, *methodFault) {
	vm, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		return nil, faultf(&types.ManagedObjectNotFound{Obj: req.This}, "managed object not found: %s", req.This)
	}
	var state types.VirtualMachinePowerState
	var disks []exportDisk
	simulator.Map.WithLock(vm, func() {
		state = vm.Runtime.PowerState
		disks = exportDisks(vm.Self, vm.Config.Hardware.Device)
	})
	if state != types.VirtualMachinePowerStatePoweredOff {
		return nil, faultf(&types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff,
			ExistingState:  state,
		}, "The attempted operation cannot be performed in the current state (%s).", state)
	}
	return x.startLease(vm.Self, types.ManagedObjectReference{}, disks)
}

// exportSnapshot exports the disks of the snapshot's own config, whatever
// the VM's power state. The simulator has no delta disks, so the bytes are
// the disks' current ones (README, limitations).
func (x *extension) exportSnapshot(req *types.ExportSnapshot) (*types.ManagedObjectReference, *methodFault) {
	snap, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return nil, faultf(&types.ManagedObjectNotFound{Obj: req.This}, "managed object not found: %s", req.This)
	}
	var disks []exportDisk
	var vm types.ManagedObjectReference
	simulator.Map.WithLock(snap, func() {
		vm = snap.Vm
		disks = exportDisks(snap.Vm, snap.Config.Hardware.Device)
	})
	return x.startLease(vm, snap.Self, disks)
}

// writeExport writes the disk as a streamOptimized VMDK (what vSphere's
// export sends), converted by qemu-img from a sparse raw image of the guest
// bytes. Without qemu-img the raw image itself is served. ctx ends with the
// lease: an aborted or expired lease stops its conversion.
func writeExport(ctx context.Context, d exportDisk, out string, block int64) (int64, error) {
	src, err := openDiskFile(d.fileName)
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
		if err = ctx.Err(); err != nil {
			break
		}
		// Holes are skipped: exporting a large thin disk costs its data only.
		if next := src.nextData(off); next >= off+block {
			off = next/block*block - block
			continue
		}
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
		cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, out)
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
