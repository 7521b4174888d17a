package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/simulator"
)

// vSAN (flag -vsan <datastore>). A vSAN datastore has no files for a disk's
// data: the VM folder holds the VMDK text descriptor, whose extent names an
// object, `RW <sectors> VSANSPARSE "vsan://<uuid>"`, and the object is only
// reachable through the host's storage stack (NFC/VDDK, exports), never
// through datastore HTTP. The simulator keeps each object as a raw sparse
// file <datastore dir>/.vsan-objects/<uuid>, which /folder refuses to serve.

// vsanObjects is the directory, in the datastore's directory, of the objects.
const vsanObjects = ".vsan-objects"

// extentFile resolves the file name an extent line gives: vsan://<uuid> to
// the object's file, anything else relative to the descriptor's directory.
func extentFile(name, descriptorDir, dsDir string) string {
	if uuid := strings.TrimPrefix(name, "vsan://"); uuid != name {
		return filepath.Join(dsDir, vsanObjects, filepath.Base(uuid))
	}
	return filepath.Join(descriptorDir, name)
}

// isVsanObjectPath tells whether a path relative to a datastore's directory
// lies in the object store.
func isVsanObjectPath(rel string) bool {
	rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	return rel == vsanObjects || strings.HasPrefix(rel, vsanObjects+"/")
}

// setVsan makes the named datastore report summary.type "vsan", as vSphere
// does for a vSAN datastore (PropertyCollector reads the object directly).
func setVsan(name string) error {
	for _, e := range simulator.Map.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == name {
			simulator.Map.WithLock(ds, func() { ds.Summary.Type = "vsan" })
			return nil
		}
	}
	return fmt.Errorf("-vsan %q: no such datastore (use -ds 2 for a second one, LocalDS_1)", name)
}
