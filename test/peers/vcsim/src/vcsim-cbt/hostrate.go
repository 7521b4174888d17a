package main

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// The throughput of one ESXi host (-host-rate): a real host serves its
// disks through one NIC and a bounded number of NFC streams, so reading many
// disks from one host while another idles is slower than spreading the reads
// over the hosts. Every disk read of a host (/folder, /nfc, /nfc-disk: the
// readers of reads.go) takes its bytes from the host's budget, chunk by
// chunk, in the order the streams ask: streams of one host take turns, so
// they share it fairly.
//
// A stream takes its host's turn (a channel of one: waiters queue in order),
// waits until the host's next send time, records its chunk, sets the next
// send time one chunk's duration later and gives the turn back before it
// writes. Recording times are therefore at least one chunk's duration apart:
// the bytes a host records over any window are at most rate × window plus
// one chunk, whatever the scheduler does. A stream that comes late gets no
// credit for the time nobody sent (no bursts).

// hostPacer paces and counts the disk bytes served per ESXi host.
type hostPacer struct {
	rate  int64 // bytes/s per host, 0 = unlimited (count only)
	chunk int64 // the most one turn sends

	mu    sync.Mutex
	hosts map[string]*hostBudget // by host moref value
}

type hostBudget struct {
	turn  chan struct{}
	next  time.Time // when the host may send its next chunk
	bytes int64     // recorded, under hostPacer.mu
}

func newHostPacer(rate int64) *hostPacer {
	chunk := int64(64 << 10)
	if rate > 0 && rate/50 < chunk { // turns of ~20 ms at low rates
		chunk = max64(rate/50, 512)
	}
	return &hostPacer{rate: rate, chunk: chunk, hosts: map[string]*hostBudget{}}
}

func (p *hostPacer) budget(host string) *hostBudget {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.hosts[host]
	if b == nil {
		b = &hostBudget{turn: make(chan struct{}, 1)}
		p.hosts[host] = b
	}
	return b
}

// take waits for the host's turn and its send time, and records n bytes
// (n at most p.chunk).
func (p *hostPacer) take(host string, n int) {
	b := p.budget(host)
	if p.rate == 0 {
		p.mu.Lock()
		b.bytes += int64(n)
		p.mu.Unlock()
		return
	}
	b.turn <- struct{}{}
	if wait := time.Until(b.next); wait > 0 {
		time.Sleep(wait)
	}
	now := time.Now()
	p.mu.Lock()
	b.bytes += int64(n)
	p.mu.Unlock()
	b.next = now.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	<-b.turn
}

// write sends b to w in turns of the host's budget.
func (p *hostPacer) write(w io.Writer, host string, b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := b
		if int64(len(chunk)) > p.chunk {
			chunk = chunk[:p.chunk]
		}
		p.take(host, len(chunk))
		n, err := w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// reply is the bytes recorded per host moref value, for /sim/stats.
func (p *hostPacer) reply() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.hosts))
	for h, b := range p.hosts {
		out[h] = b.bytes
	}
	return out
}

// hostPacedWriter is a response body paced by its host's budget.
type hostPacedWriter struct {
	http.ResponseWriter
	pacer *hostPacer
	host  string
}

func (h *hostPacedWriter) Write(b []byte) (int, error) {
	return h.pacer.write(h.ResponseWriter, h.host, b)
}

// vmHost is the host a VM is registered on (runtime.host), zero if none.
func vmHost(vm *simulator.VirtualMachine) types.ManagedObjectReference {
	var host types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		if vm.Runtime.Host != nil {
			host = *vm.Runtime.Host
		}
	})
	return host
}
