// Command vcsim is the stock govmomi vCenter simulator launcher, rebuilt from
// the Debian golang-github-vmware-govmomi-dev library (which ships no vcsim
// main package). See /work/shared/reference/vsphere-simulator.md, section 2.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"vcsim/launch"
)

func main() {
	cfg := launch.AddFlags(flag.CommandLine)
	flag.Parse()

	model, err := cfg.NewModel(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	srv := model.Service.NewServer()

	out := bufio.NewWriter(os.Stdout)
	launch.Announce(out, srv)
	_ = out.Flush()

	launch.WaitForSignal()
	srv.Close()
	model.Remove() // deletes the datastore directories under $TMPDIR
}
