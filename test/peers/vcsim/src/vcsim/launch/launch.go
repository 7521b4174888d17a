// Package launch holds what the stock launcher (vcsim) and the test extension
// (vcsim-cbt) share: the stock flags, building the simulator model from them,
// the start-up line and the shutdown signal. It only wires flags to the govmomi
// 0.24.2 simulator library; all simulator behaviour lives in the library.
package launch

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

// Config is the result of the stock flags.
type Config struct {
	Addr        string
	ESX         bool
	Load        string
	TLS         bool
	TLSCert     string
	TLSKey      string
	Username    string
	Password    string
	Trace       bool
	IdleTimeout time.Duration
	APIVersion  string

	Model *simulator.Model
}

// AddFlags registers the stock vcsim flags on fs. Inventory counts are copied
// straight into a VPX model; with -esx the counts that make sense for a host
// are carried over to an ESX model in NewModel.
func AddFlags(fs *flag.FlagSet) *Config {
	c := &Config{Model: simulator.VPX()}
	m := c.Model
	fs.StringVar(&c.Addr, "l", "127.0.0.1:8989", "listen address (loopback only; port 0 = any free port)")
	fs.BoolVar(&c.ESX, "esx", false, "simulate a standalone ESX host instead of vCenter")
	fs.StringVar(&c.Load, "load", "", "load a saved inventory from this directory instead of building a model")
	fs.IntVar(&m.Datacenter, "dc", m.Datacenter, "number of datacenters")
	fs.IntVar(&m.Cluster, "cluster", m.Cluster, "number of clusters per datacenter")
	fs.IntVar(&m.ClusterHost, "host", m.ClusterHost, "number of hosts per cluster")
	fs.IntVar(&m.Host, "standalone-host", m.Host, "number of standalone hosts per datacenter")
	fs.IntVar(&m.Pool, "pool", m.Pool, "number of child resource pools per cluster")
	fs.IntVar(&m.Machine, "vm", m.Machine, "number of VMs per resource pool")
	fs.IntVar(&m.Datastore, "ds", m.Datastore, "number of local datastores")
	fs.IntVar(&m.Portgroup, "pg", m.Portgroup, "number of distributed portgroups per datacenter")
	fs.IntVar(&m.Folder, "folder", m.Folder, "number of folders")
	fs.BoolVar(&m.Autostart, "autostart", m.Autostart, "power on the model's VMs")
	fs.BoolVar(&c.TLS, "tls", true, "serve HTTPS")
	fs.StringVar(&c.TLSCert, "tlscert", "", "PEM certificate file (default: built-in)")
	fs.StringVar(&c.TLSKey, "tlskey", "", "PEM key file (default: built-in)")
	fs.StringVar(&c.Username, "username", "", "accept only this user name (default: any non-empty)")
	fs.StringVar(&c.Password, "password", "", "accept only this password (default: any non-empty)")
	fs.BoolVar(&c.Trace, "trace", false, "write SOAP traffic to stderr")
	fs.DurationVar(&c.IdleTimeout, "session-idle-timeout", 0, "expire idle sessions after this long (0 = never)")
	fs.StringVar(&c.APIVersion, "api-version", "", "override about.apiVersion (default 6.5)")
	return c
}

// checkLoopback refuses anything but a loopback listen address: the simulator
// accepts any credentials by default and serves local files, so it must never
// be reachable from the network.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-l %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-l %q: refusing a non-loopback listen address", addr)
	}
	return nil
}

// NewModel builds (or loads) the inventory and prepares the service:
// listen address, credentials, trace, idle timeout and, when serverCert is
// nil, the TLS certificate from -tlscert/-tlskey (or the library's default).
func (c *Config) NewModel(serverCert *tls.Certificate) (*simulator.Model, error) {
	if err := checkLoopback(c.Addr); err != nil {
		return nil, err
	}
	m := c.Model
	if c.ESX {
		esx := simulator.ESX()
		esx.Datastore, esx.Machine, esx.Autostart = m.Datastore, m.Machine, m.Autostart
		m = esx
	}
	if c.APIVersion != "" {
		m.ServiceContent.About.ApiVersion = c.APIVersion
	}

	var err error
	if c.Load != "" {
		err = m.Load(c.Load)
	} else {
		err = m.Create()
	}
	if err != nil {
		return nil, err
	}

	simulator.Trace = c.Trace
	simulator.SessionIdleTimeout = c.IdleTimeout

	u := &url.URL{Host: c.Addr}
	if c.Username != "" || c.Password != "" {
		// Login compares Listen.User with DefaultLogin by pointer: a distinct
		// Userinfo switches from "any non-empty credentials" to an exact check.
		simulator.DefaultLogin = url.UserPassword(c.Username, c.Password)
		u.User = url.UserPassword(c.Username, c.Password)
	}
	m.Service.Listen = u

	if c.TLS {
		cfg := new(tls.Config)
		switch {
		case serverCert != nil:
			cfg.Certificates = []tls.Certificate{*serverCert}
		case c.TLSCert != "" || c.TLSKey != "":
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		m.Service.TLS = cfg
	} else if serverCert != nil {
		return nil, errors.New("a server certificate was given but -tls=false")
	}
	return m, nil
}

// Announce prints the line clients parse to find the simulator.
func Announce(w io.Writer, s *simulator.Server) {
	fmt.Fprintf(w, "export GOVC_URL=%s GOVC_SIM_PID=%d\n", s.URL, os.Getpid())
}

// WaitForSignal blocks until SIGTERM or SIGINT.
func WaitForSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
