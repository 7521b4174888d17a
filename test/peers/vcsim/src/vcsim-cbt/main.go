// Command vcsim-cbt is the stock govmomi simulator (see ../vcsim) with a small
// front HTTP handler on the same port that adds what oneswap's tests need and
// vcsim 0.24.2 lacks: Changed Block Tracking computed from the real disk bytes
// (QueryChangedDiskAreas, changeId on disk backings), ExportVm with
// HttpNfcLease downloads, capacityInBytes on every disk, a session-protected
// /folder and a fresh TLS certificate per start.
// Specification: /work/shared/reference/vsphere-simulator.md, section 7.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"sort"

	"github.com/vmware/govmomi/simulator"

	"vcsim/launch"
)

func main() {
	cfg := launch.AddFlags(flag.CommandLine)
	block := flag.Int64("cbt-block", 65536, "CBT block size in bytes, for hashing and reported areas")
	window := flag.Int64("cbt-window", 0, "largest byte range one QueryChangedDiskAreas answer covers (0 = whole disk)")
	folderAuth := flag.Bool("folder-auth", true, "require a session cookie on /folder (false = stock behaviour)")
	folderRate := flag.Int64("folder-rate", 0, "bytes per second one /folder download may send (0 = unlimited); models the per-stream limit of real datastore HTTP")
	certOut := flag.String("cert-out", "", "write the server certificate (PEM) to this file")
	flag.Parse()

	if err := run(cfg, *block, *window, *folderAuth, *folderRate, *certOut); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim-cbt:", err)
		os.Exit(1)
	}
}

func run(cfg *launch.Config, block, window int64, folderAuth bool, folderRate int64, certOut string) error {
	if block <= 0 || block%512 != 0 {
		return fmt.Errorf("-cbt-block %d: must be a positive multiple of 512", block)
	}
	if window < 0 || window%block != 0 {
		// Areas are whole blocks except at the disk end (reference 7.3).
		return fmt.Errorf("-cbt-window %d: must be 0 or a positive multiple of -cbt-block", window)
	}
	if folderRate < 0 {
		return fmt.Errorf("-folder-rate %d: must be 0 or positive", folderRate)
	}

	var cert *tls.Certificate
	if cfg.TLS && cfg.TLSCert == "" && cfg.TLSKey == "" {
		c, err := newCertificate()
		if err != nil {
			return err
		}
		cert = &c
	}
	model, err := cfg.NewModel(cert)
	if err != nil {
		return err
	}
	defer model.Remove() // deletes the datastore directories under $TMPDIR

	ext := newExtension(block, window, folderAuth)
	ext.folderRate = folderRate
	defer ext.close()

	srv := model.Service.NewServer()
	defer srv.Close()
	out := bufio.NewWriter(os.Stdout)
	launch.Announce(out, srv)
	if cfg.TLS {
		der := srv.Certificate().Raw
		ext.thumbprint = sha1Thumbprint(der)
		fmt.Fprintf(out, "VCSIM_THUMBPRINT=%s\n", ext.thumbprint)
		fmt.Fprintf(out, "VCSIM_THUMBPRINT_SHA256=%s\n", sha256Thumbprint(der))
		if certOut != "" {
			if err := writeCertPEM(certOut, der); err != nil {
				return err
			}
		}
	} else {
		ext.scheme = "http"
	}
	for _, ds := range datastores() {
		fmt.Fprintf(out, "VCSIM_DS_%s=%s\n", ds[0], ds[1])
	}
	// NewServer builds and starts the server with the library's ServeMux as
	// handler and offers no hook in between. Swapping the handler here, before
	// the URL is announced, puts the front handler in front of every request a
	// client can make (nobody knows the port yet).
	srv.Config.Handler = ext.front(srv.Config.Handler)
	if err := out.Flush(); err != nil {
		return err
	}

	launch.WaitForSignal()
	return nil
}

// datastores lists (name, local directory) of every datastore, sorted by name.
func datastores() [][2]string {
	var list [][2]string
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		list = append(list, [2]string{ds.Name, ds.Info.GetDatastoreInfo().Url})
	}
	sort.Slice(list, func(i, j int) bool { return list[i][0] < list[j][0] })
	return list
}
