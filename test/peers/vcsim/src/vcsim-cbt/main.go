// Command vcsim-cbt is the stock govmomi simulator (see ../vcsim) with a small
// front HTTP handler on the same port that adds what oneswap's tests need and
// vcsim 0.24.2 lacks: Changed Block Tracking computed from the real disk bytes
// (QueryChangedDiskAreas, changeId on disk backings), ExportVm/ExportSnapshot
// with HttpNfcLease life cycle and downloads, capacityInBytes on every disk, a
// session-protected /folder that refuses running VMs' disk extents as ESXi
// does, a vSAN datastore, an NFC disk endpoint (the VDDK stand-in's data
// path), stats for tests and a fresh TLS certificate per start.
// Specification: /work/shared/reference/vsphere-simulator.md, section 7.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"

	"vcsim/launch"
)

func main() {
	cfg := launch.AddFlags(flag.CommandLine)
	o := options{delays: delayFlag{}}
	flag.Int64Var(&o.block, "cbt-block", 65536, "CBT block size in bytes, for hashing and reported areas")
	flag.Int64Var(&o.window, "cbt-window", 0, "largest byte range one QueryChangedDiskAreas answer covers (0 = whole disk)")
	flag.BoolVar(&o.folderAuth, "folder-auth", true, "require a session cookie on /folder (false = stock behaviour)")
	flag.BoolVar(&o.folderLock, "folder-lock", true, "refuse /folder GET/HEAD of the disk extents of running or suspended VMs, as ESXi does (false = old behaviour, for transition only)")
	flag.Int64Var(&o.folderRate, "folder-rate", 0, "bytes per second one /folder download may send (0 = unlimited); models the per-stream limit of real datastore HTTP")
	flag.Int64Var(&o.nfcRate, "nfc-rate", 0, "bytes per second one /nfc export download may send (0 = unlimited)")
	flag.Int64Var(&o.hostRate, "host-rate", 0, "bytes per second all disk reads from one ESXi host share, /folder, /nfc and /nfc-disk alike, in fair turns (0 = unlimited); models one host's NIC and NFC limits")
	flag.DurationVar(&o.leaseTimeout, "lease-timeout", 5*time.Minute, "an export lease without HttpNfcLeaseProgress for this long times out")
	flag.Var(o.delays, "delay", "Method=duration[,Method=duration]: answer these SOAP methods only after the delay (repeatable)")
	flag.StringVar(&o.vsan, "vsan", "", "datastore to present as vSAN (summary.type vsan, disks as objects)")
	flag.StringVar(&o.certOut, "cert-out", "", "write the server certificate (PEM) to this file")
	flag.Parse()

	if err := run(cfg, o); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim-cbt:", err)
		os.Exit(1)
	}
}

// options are the flags vcsim-cbt adds to the stock ones.
type options struct {
	block, window          int64
	folderAuth, folderLock bool
	folderRate, nfcRate    int64
	hostRate               int64
	leaseTimeout           time.Duration
	delays                 delayFlag
	vsan                   string
	certOut                string
}

// delayFlag is -delay Method=duration[,Method=duration].
type delayFlag map[string]time.Duration

func (d delayFlag) String() string { return fmt.Sprint(map[string]time.Duration(d)) }

func (d delayFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		kv := strings.SplitN(strings.TrimSpace(item), "=", 2)
		if len(kv) != 2 || kv[0] == "" {
			return fmt.Errorf("%q: want Method=duration", item)
		}
		dur, err := time.ParseDuration(kv[1])
		if err != nil || dur < 0 {
			return fmt.Errorf("%q: bad duration", item)
		}
		d[kv[0]] = dur
	}
	return nil
}

func run(cfg *launch.Config, o options) error {
	block, window := o.block, o.window
	if block <= 0 || block%512 != 0 {
		return fmt.Errorf("-cbt-block %d: must be a positive multiple of 512", block)
	}
	if window < 0 || window%block != 0 {
		// Areas are whole blocks except at the disk end (reference 7.3).
		return fmt.Errorf("-cbt-window %d: must be 0 or a positive multiple of -cbt-block", window)
	}
	if o.folderRate < 0 {
		return fmt.Errorf("-folder-rate %d: must be 0 or positive", o.folderRate)
	}
	if o.nfcRate < 0 {
		return fmt.Errorf("-nfc-rate %d: must be 0 or positive", o.nfcRate)
	}
	if o.hostRate < 0 {
		return fmt.Errorf("-host-rate %d: must be 0 or positive", o.hostRate)
	}
	if o.leaseTimeout <= 0 {
		return fmt.Errorf("-lease-timeout %s: must be positive", o.leaseTimeout)
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

	ext := newExtension(block, window)
	ext.folderAuth, ext.folderLock = o.folderAuth, o.folderLock
	ext.folderRate, ext.nfcRate = o.folderRate, o.nfcRate
	ext.hostRate = newHostPacer(o.hostRate)
	ext.leaseTimeout, ext.delays = o.leaseTimeout, o.delays
	defer ext.close()
	if o.vsan != "" {
		if err := setVsan(o.vsan); err != nil {
			return err
		}
	}

	srv := model.Service.NewServer()
	defer srv.Close()
	out := bufio.NewWriter(os.Stdout)
	launch.Announce(out, srv)
	if cfg.TLS {
		der := srv.Certificate().Raw
		ext.thumbprint = sha1Thumbprint(der)
		fmt.Fprintf(out, "VCSIM_THUMBPRINT=%s\n", ext.thumbprint)
		fmt.Fprintf(out, "VCSIM_THUMBPRINT_SHA256=%s\n", sha256Thumbprint(der))
		if o.certOut != "" {
			if err := writeCertPEM(o.certOut, der); err != nil {
				return err
			}
		}
	} else {
		ext.scheme = "http"
	}
	if o.vsan != "" {
		fmt.Fprintf(out, "VCSIM_VSAN=%s\n", o.vsan)
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
