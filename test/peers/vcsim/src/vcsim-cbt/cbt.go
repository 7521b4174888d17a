package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"hash/maphash"
	"log"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Changed Block Tracking, computed from the disk bytes (reference 7.2, 7.3).
//
// Every snapshot of a VM with change tracking on hashes each of its disks in
// -cbt-block blocks; that list is an epoch. Epochs of one disk form a track
// whose changeIds share one vSphere-shaped UUID part ("52 ..-.. /N"); turning
// change tracking off ends the track, so the next epoch starts a new UUID at
// /1 (a "CBT reset" the client must detect). Epochs outlive their snapshots:
// a client deletes the previous snapshot before asking for changes since it.

type diskKey struct {
	vm  types.ManagedObjectReference
	dev int32
}

type track struct {
	uuid   string
	epochs []*epoch
}

type epoch struct {
	track    *track
	changeID string
	sums     []uint64
	nonzero  []bool
}

// snapDisk is what a snapshot recorded for one disk: an epoch or why not.
type snapDisk struct {
	epoch *epoch
	err   error
}

// newTrackUUID makes the part of a changeId before the "/": 16 random bytes,
// the first one 0x52 as on ESXi, "-" between the 8th and 9th byte.
func newTrackUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] = 0x52
	hex := func(p []byte) string { return strings.TrimSpace(fmt.Sprintf("% x", p)) }
	return hex(b[:8]) + "-" + hex(b[8:])
}

// blockSeed keys the block hashes; epochs are only compared within one run.
var blockSeed = maphash.MakeSeed()

// hashDisk reads capacity bytes of the disk behind fileName in blocks. Holes
// in the backing files are zeros and are not read, so a snapshot costs time in
// proportion to the data, not to the capacity: ESXi keeps a change bitmap and
// pays nothing here, and a test or benchmark should not wait on the simulator
// hashing gigabytes of holes. maphash (64 bits, AES-based) is fast and ample
// for telling changed blocks from unchanged ones.
func hashDisk(fileName string, capacity, block int64) ([]uint64, []bool, error) {
	return hashDiskRange(fileName, capacity, block, 0, capacity)
}

// hashDiskRange is hashDisk for the blocks that meet [from, to) only; the
// other entries of the lists stay zero and must not be used.
func hashDiskRange(fileName string, capacity, block, from, to int64) ([]uint64, []bool, error) {
	d, err := openDiskFile(fileName)
	if err != nil {
		return nil, nil, err
	}
	defer d.close()
	n := (capacity + block - 1) / block
	sums := make([]uint64, n)
	nonzero := make([]bool, n)
	buf, zero := make([]byte, block), make([]byte, block)
	zeroSum := maphash.Bytes(blockSeed, zero)
	next := int64(-1) // the first offset at or after which data may lie
	for i := from / block; i < n && i*block < to; i++ {
		lo, hi := i*block, min64((i+1)*block, capacity)
		if next < lo {
			next = d.nextData(lo)
		}
		if next >= hi && hi-lo == block {
			sums[i] = zeroSum
			continue
		}
		p := buf[:hi-lo]
		if err := d.readAt(p, lo); err != nil {
			return nil, nil, err
		}
		sums[i] = maphash.Bytes(blockSeed, p)
		nonzero[i] = !bytes.Equal(p, zero[:len(p)])
	}
	return sums, nonzero, nil
}

func cbtEnabled(c *types.VirtualMachineConfigInfo) bool {
	return c != nil && c.ChangeTrackingEnabled != nil && *c.ChangeTrackingEnabled
}

// changeIDOf points at the changeId field of the disk backings that have one.
func changeIDOf(b types.BaseVirtualDeviceBackingInfo) *string {
	switch b := b.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
		return &b.ChangeId
	case *types.VirtualDiskSparseVer2BackingInfo:
		return &b.ChangeId
	case *types.VirtualDiskSeSparseBackingInfo:
		return &b.ChangeId
	case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
		return &b.ChangeId
	case *types.VirtualDiskRawDiskVer2BackingInfo:
		return &b.ChangeId
	}
	return nil
}

func diskFile(d *types.VirtualDisk) string {
	if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		return b.GetVirtualDeviceFileBackingInfo().FileName
	}
	return ""
}

// --- registry hook -------------------------------------------------------
//
// Snapshots are seen through the registry (simulator.Map.AddHandler) rather
// than by wrapping CreateSnapshot_Task in the front handler: the hook runs
// inside the task, under the VM's lock, right after the snapshot's config was
// copied from the VM, so the epoch is exactly "the disk at snapshot time", it
// exists before the task reports success (no window in which a client could
// see the snapshot without its changeId), and it does not depend on parsing
// the stock task result or on which API path created the snapshot.

func (x *extension) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VcsimCbtExtension", Value: "vcsim-cbt"}
}

func (x *extension) UpdateObject(mo.Reference, []types.PropertyChange) {}
func (x *extension) RemoveObject(types.ManagedObjectReference)         {}

func (x *extension) PutObject(obj mo.Reference) {
	snap, ok := obj.(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	vm, ok := simulator.Map.Get(snap.Vm).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	// The VM is already locked by CreateSnapshot_Task; only the snapshot is locked here.
	simulator.Map.WithLock(snap, func() { x.snapshotTaken(vm, snap) })
}

// copyDisk copies a disk and its backing: the stock snapshot config is a
// shallow copy of the VM's, sharing device pointers (and the slice) with it.
func copyDisk(d *types.VirtualDisk) *types.VirtualDisk {
	c := *d
	if d.Backing != nil {
		v := reflect.ValueOf(d.Backing).Elem()
		b := reflect.New(v.Type())
		b.Elem().Set(v)
		c.Backing = b.Interface().(types.BaseVirtualDeviceBackingInfo)
	}
	return &c
}

func (x *extension) snapshotTaken(vm *simulator.VirtualMachine, snap *simulator.VirtualMachineSnapshot) {
	// Give the snapshot its own device list, so what is set below (and any
	// later reconfigure of the VM) does not leak between VM and snapshot.
	devices := make([]types.BaseVirtualDevice, len(snap.Config.Hardware.Device))
	for i, d := range snap.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			d = copyDisk(disk)
		}
		devices[i] = d
	}
	snap.Config.Hardware.Device = devices

	enabled := cbtEnabled(&snap.Config)
	recorded := map[int32]snapDisk{}
	for _, d := range devices {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		if disk.CapacityInBytes == 0 {
			disk.CapacityInBytes = disk.CapacityInKB * 1024
		}
		if !enabled {
			continue
		}
		sums, nonzero, err := hashDisk(diskFile(disk), diskCapacity(disk), x.block)
		if err != nil {
			log.Printf("vcsim-cbt: %s disk %d: no CBT epoch: %v", snap.Self, disk.Key, err)
			recorded[disk.Key] = snapDisk{err: err}
			continue
		}
		ep := x.addEpoch(diskKey{vm.Self, disk.Key}, sums, nonzero)
		recorded[disk.Key] = snapDisk{epoch: ep}
		if id := changeIDOf(disk.Backing); id != nil {
			*id = ep.changeID
		}
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	if !enabled {
		x.endTracks(vm.Self)
		return
	}
	x.snapshots[snap.Self] = recorded
	for _, d := range vm.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			if id := changeIDOf(disk.Backing); id != nil && recorded[disk.Key].epoch != nil {
				*id = recorded[disk.Key].epoch.changeID
			}
		}
	}
}

func (x *extension) addEpoch(k diskKey, sums []uint64, nonzero []bool) *epoch {
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.tracks[k]
	if t == nil {
		t = &track{uuid: newTrackUUID()}
		x.tracks[k] = t
	}
	ep := &epoch{track: t, sums: sums, nonzero: nonzero}
	t.epochs = append(t.epochs, ep)
	ep.changeID = fmt.Sprintf("%s/%d", t.uuid, len(t.epochs))
	x.epochs[ep.changeID] = ep
	return ep
}

// endTracks forgets the current tracks of a VM's disks (change tracking was
// switched off). Their changeIds stay known but belong to no live track, so
// they no longer compare with new epochs. Caller holds x.mu.
func (x *extension) endTracks(vm types.ManagedObjectReference) {
	for k := range x.tracks {
		if k.vm == vm {
			delete(x.tracks, k)
		}
	}
}

// --- keeping VM configs vSphere-like ------------------------------------

// sync brings every VM in line; it runs once at start-up, before serving.
func (x *extension) sync() {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() { x.syncVM(vm) })
	}
}

// syncTask runs after each task the stock handler completed (tasks finish
// before the call returns), for the VMs the task touched: its entity and, for
// CreateVM_Task, CloneVM_Task, RegisterVM_Task, the VM in its result. It runs
// before the client sees the task, so what the client reads next is
// vSphere-like. Only those VMs: a VM another request is still creating is
// written under its folder's lock, not its own, and must not be touched.
func (x *extension) syncTask(ref types.ManagedObjectReference) {
	task, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return
	}
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(task, func() {
		if e := task.Info.Entity; e != nil {
			vms = append(vms, *e)
		}
		if r, ok := task.Info.Result.(types.ManagedObjectReference); ok {
			vms = append(vms, r)
		}
	})
	for _, r := range vms {
		if vm, ok := simulator.Map.Get(r).(*simulator.VirtualMachine); ok {
			simulator.Map.WithLock(vm, func() { x.syncVM(vm) })
		}
	}
}

// syncVM, under the VM's lock:
//   - gives every disk capacityInBytes (reference 7.5);
//   - with change tracking off, ends the disks' tracks (CBT reset) and clears
//     their changeIds;
//   - with change tracking on, keeps each disk's current changeId even when a
//     reconfigure replaced the device with a client's copy (vSphere clients
//     cannot set changeIds).
func (x *extension) syncVM(vm *simulator.VirtualMachine) {
	if vm.Config == nil {
		return
	}
	enabled := cbtEnabled(vm.Config)
	x.mu.Lock()
	defer x.mu.Unlock()
	if !enabled {
		x.endTracks(vm.Self)
	}
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		k := diskKey{vm.Self, disk.Key}
		x.normalizeCapacity(k, disk)
		if id := changeIDOf(disk.Backing); id != nil {
			*id = ""
			if t := x.tracks[k]; enabled && t != nil {
				*id = t.epochs[len(t.epochs)-1].changeID
			}
		}
	}
}

// normalizeCapacity makes capacityInBytes and capacityInKB agree. When they
// disagree, the one that changed since the last sync wins: a client that
// edits capacityInKB on a device it read (which carries capacityInBytes)
// must not be overruled by the stale byte value. Caller holds x.mu.
func (x *extension) normalizeCapacity(k diskKey, d *types.VirtualDisk) {
	kb := d.CapacityInKB * 1024
	switch {
	case d.CapacityInBytes == 0:
		d.CapacityInBytes = kb
	case d.CapacityInBytes != kb && d.CapacityInBytes == x.capacity[k]:
		d.CapacityInBytes = kb
	case d.CapacityInBytes != kb:
		d.CapacityInKB = (d.CapacityInBytes + 1023) / 1024
	}
	x.capacity[k] = d.CapacityInBytes
}

// --- QueryChangedDiskAreas ------------------------------------------------

func (x *extension) queryChangedDiskAreas(req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, *methodFault) {
	vm, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		return nil, faultf(&types.ManagedObjectNotFound{Obj: req.This}, "managed object not found: %s", req.This)
	}
	if req.Snapshot == nil {
		return x.queryCurrentDisk(vm, req)
	}
	snap, ok := simulator.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
	if !ok || snap.Vm != vm.Self {
		return nil, faultf(&types.ManagedObjectNotFound{Obj: *req.Snapshot}, "managed object not found: %s", *req.Snapshot)
	}
	var capacity int64 = -1
	var file string // FileFaults name the disk, as vSphere does
	simulator.Map.WithLock(snap, func() {
		for _, d := range snap.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && disk.Key == req.DeviceKey {
				capacity, file = diskCapacity(disk), diskFile(disk)
			}
		}
	})
	if capacity < 0 {
		return nil, faultf(&types.NotFound{}, "device %d is not a disk of %s", req.DeviceKey, snap.Self)
	}
	var enabled bool
	simulator.Map.WithLock(vm, func() { enabled = cbtEnabled(vm.Config) })

	x.mu.Lock()
	defer x.mu.Unlock()
	rec := x.snapshots[snap.Self][req.DeviceKey]
	switch {
	case !enabled:
		return nil, faultf(&types.FileFault{File: file}, "change tracking is not enabled on %s", vm.Self)
	case rec.err != nil:
		return nil, faultf(&types.FileFault{File: file}, "no change tracking data: %v", rec.err)
	case rec.epoch == nil:
		return nil, faultf(&types.FileFault{File: file}, "%s was taken without change tracking", snap.Self)
	case req.StartOffset < 0 || req.StartOffset >= capacity:
		return nil, faultf(&types.InvalidArgument{InvalidProperty: "startOffset"}, "startOffset %d is outside the disk (%d bytes)", req.StartOffset, capacity)
	}

	cur := rec.epoch
	changed := func(i int64) bool { return i < int64(len(cur.nonzero)) && cur.nonzero[i] }
	if req.ChangeId != "*" {
		prev := x.epochs[req.ChangeId]
		if prev == nil || prev.track != cur.track || x.tracks[diskKey{vm.Self, req.DeviceKey}] != cur.track {
			return nil, faultf(&types.FileFault{File: file}, "unknown changeId %q for disk %d", req.ChangeId, req.DeviceKey)
		}
		changed = func(i int64) bool { return blockDiffers(prev, cur, i) }
	}

	return x.changedAreas(req.StartOffset, capacity, changed), nil
}

// changedAreas answers one page: [start, start+min(window, capacity-start))
// with the changed blocks in it, adjacent ones merged.
func (x *extension) changedAreas(start, capacity int64, changed func(block int64) bool) *types.DiskChangeInfo {
	length := capacity - start
	if x.window > 0 && x.window < length {
		length = x.window
	}
	info := &types.DiskChangeInfo{StartOffset: start, Length: length}
	end := start + length
	for i := start / x.block; i*x.block < end; i++ {
		if !changed(i) {
			continue
		}
		lo, hi := max64(i*x.block, start), min64((i+1)*x.block, end)
		if n := len(info.ChangedArea); n > 0 && info.ChangedArea[n-1].Start+info.ChangedArea[n-1].Length == lo {
			info.ChangedArea[n-1].Length += hi - lo // merge adjacent blocks
			continue
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: lo, Length: hi - lo})
	}
	return info
}

// queryCurrentDisk is QueryChangedDiskAreas without a snapshot: changes
// between the epoch of changeId and the disk's bytes now. vSphere allows it
// only for a powered-off VM (a running VM's disk is open and changing), and
// so does this: otherwise FileFault, naming the disk. The disk is hashed for
// this page only; no epoch and no changeId are made.
func (x *extension) queryCurrentDisk(vm *simulator.VirtualMachine, req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, *methodFault) {
	var state types.VirtualMachinePowerState
	var enabled bool
	var capacity int64 = -1
	var file string
	simulator.Map.WithLock(vm, func() {
		state, enabled = vm.Runtime.PowerState, cbtEnabled(vm.Config)
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && disk.Key == req.DeviceKey {
				capacity, file = diskCapacity(disk), diskFile(disk)
			}
		}
	})
	switch {
	case state != types.VirtualMachinePowerStatePoweredOff:
		return nil, faultf(&types.FileFault{File: file}, "cannot compute changes of the current disk of %s: the virtual machine is %s (query against a snapshot, or power it off)", vm.Self.Value, state)
	case capacity < 0:
		return nil, faultf(&types.NotFound{}, "device %d is not a disk of %s", req.DeviceKey, vm.Self)
	case !enabled:
		return nil, faultf(&types.FileFault{File: file}, "change tracking is not enabled on %s", vm.Self)
	case req.StartOffset < 0 || req.StartOffset >= capacity:
		return nil, faultf(&types.InvalidArgument{InvalidProperty: "startOffset"}, "startOffset %d is outside the disk (%d bytes)", req.StartOffset, capacity)
	}
	var prev *epoch
	if req.ChangeId != "*" {
		x.mu.Lock()
		prev = x.epochs[req.ChangeId]
		live := x.tracks[diskKey{vm.Self, req.DeviceKey}]
		x.mu.Unlock()
		if prev == nil || prev.track != live {
			return nil, faultf(&types.FileFault{File: file}, "unknown changeId %q for disk %d", req.ChangeId, req.DeviceKey)
		}
	}
	end := req.StartOffset + capacity
	if x.window > 0 {
		end = req.StartOffset + x.window
	}
	sums, nonzero, err := hashDiskRange(file, capacity, x.block, req.StartOffset, end)
	if err != nil {
		return nil, faultf(&types.FileFault{File: file}, "no change tracking data: %v", err)
	}
	now := &epoch{sums: sums, nonzero: nonzero}
	changed := func(i int64) bool { return i < int64(len(nonzero)) && nonzero[i] }
	if prev != nil {
		changed = func(i int64) bool { return blockDiffers(prev, now, i) }
	}
	return x.changedAreas(req.StartOffset, capacity, changed), nil
}

// blockDiffers compares block i of two epochs; a block one epoch lacks (the
// disk was grown) counts as zeros.
func blockDiffers(a, b *epoch, i int64) bool {
	inA, inB := i < int64(len(a.sums)), i < int64(len(b.sums))
	switch {
	case inA && inB:
		return a.sums[i] != b.sums[i]
	case inA:
		return a.nonzero[i]
	case inB:
		return b.nonzero[i]
	}
	return false
}
